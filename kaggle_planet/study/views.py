"""What the report computes, as data: one run folder's view (:class:`RunView`) and everything the page
shows (:class:`ReportData`); :mod:`.report` fills them in, :mod:`.render` turns them into HTML."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import artifacts
from .compare import Comparison

GRID = np.linspace(0.0, 1.0, 201)  # thresholds at which the F2 curves are evaluated


@dataclass
class RunView:
    """One run folder as the report sees it: predictions, its files' scores and recomputed ones."""

    name: str
    run: artifacts.Run
    stored_scores: dict[str, Any] | None  # scores.json, None when absent
    stored_thresholds: dict[str, Any] | None  # thresholds.json, None when absent
    scores: dict[str, Any]  # metrics.summarize_scores of the OOF predictions
    histories: dict[int, pd.DataFrame] = field(default_factory=dict)  # fold -> history.csv

    @property
    def kind(self) -> str:
        return self.run.info.kind

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def method(self) -> str:
        """A blend's method (scores.json ``method``, else run.json extra ``method``); '' for models."""
        if self.kind != "blend":
            return ""
        return str((self.stored_scores or {}).get("method") or self.run.info.extra.get("method") or "?")


@dataclass
class ReportData:
    """Everything the page shows, computed; ``render_html`` only formats it."""

    source: Path
    layout: str  # "experiment" | "model" | "blend"
    competition: str
    task: str
    metric: str
    classes: list[str]
    models: list[RunView]
    blends: list[RunView]
    focus: RunView  # the run whose per-class numbers are shown (the blend, else the best model)
    thresholds: np.ndarray | None  # (C,) focus's thresholds (multilabel/binary), None for multiclass
    thresholds_source: str
    per_class: pd.DataFrame  # one row per class of ``focus``
    f2_curves: np.ndarray | None  # (C, len(GRID)) F2 against each class's threshold, others fixed
    focus_f2: float | None  # multilabel: sample F2 of ``focus`` at ``thresholds``
    correlation: pd.DataFrame | None  # model x model Pearson correlation of OOF probabilities
    blend_gains: pd.DataFrame  # one row per blend
    confusion: np.ndarray | None  # multiclass: (C, C) rows true, columns predicted
    per_class_by_run: pd.DataFrame | None  # class x run: F2 (multilabel) / recall (multiclass)
    warnings: list[str]
    experiment_scores: dict[str, Any] | None  # runs/<exp>/scores.json (pipeline summary)
    comparison: Comparison | None = None  # leaderboard and drop-one ablations (compare.py)
    submissions: pd.DataFrame | None = None  # submissions log rows of this competition with a public score

    @property
    def runs(self) -> list[RunView]:
        return [*self.models, *self.blends]
