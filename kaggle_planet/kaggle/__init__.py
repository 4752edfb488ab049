"""Kaggle's side, torch-free: the official client (download, submit, scores), safe archive extraction and
validated submission files."""
