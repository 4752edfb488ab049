"""The task kinds and what follows from a task kind alone, torch-free (the config and the losses both read it)."""
from __future__ import annotations

# "auto" loss per task kind: sigmoid BCE for multi-label and binary, softmax CE for multiclass.
AUTO_LOSS = {"multilabel": "bce", "binary": "bce", "multiclass": "ce"}


def resolve_loss(loss: str, task: str) -> str:
    """The ``losses.LOSSES`` name a ``loss`` setting means for a task kind (``auto`` -> bce / ce)."""
    return AUTO_LOSS[task] if loss == "auto" else loss
