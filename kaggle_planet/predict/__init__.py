"""Predictions from trained fold models: TTA over the OOF and test images (``tta``), and single images or
folders with a model or a blend (``images``)."""
