"""The report's page from a :class:`ReportData`: matplotlib figures (the Agg canvas of
``matplotlib.figure.Figure``, no pyplot global state) embedded as base64 PNG data URIs, tables and sections
with every string from the data escaped, inline CSS and no script."""
from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .views import GRID, ReportData, RunView

# ------------------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg canvas by default; no pyplot global state

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_learning_curves(view: RunView, metric: str) -> str:
    """Loss and metric per epoch, train (solid) vs valid (dashed), one colour per fold."""
    fig = _new_figure(10, 3.4)
    axes = fig.subplots(1, 2)
    for (k, hist), colour in zip(view.histories.items(), _colours(len(view.histories))):
        for ax, what in zip(axes, ("loss", "metric")):
            ax.plot(hist["epoch"], hist[f"train_{what}"], "-o", color=colour, ms=3, label=f"fold {k} train")
            ax.plot(hist["epoch"], hist[f"valid_{what}"], "--s", color=colour, ms=3, label=f"fold {k} valid")
    for ax, title in zip(axes, ("loss", metric)):
        ax.set_title(f"{view.name}: {title}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncols=2)
    return figure_to_data_uri(fig)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_scores(views: Sequence[RunView], metric: str) -> str:
    """OOF score per run (bars) with its per-fold scores (dots); blends in a second colour."""
    fig = _new_figure(max(5.5, 1.1 * len(views) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(views))
    colours = ["#4c72b0" if v.kind != "blend" else "#dd8452" for v in views]
    oof = [v.scores["oof"] for v in views]
    ax.bar(x, oof, color=colours, width=0.6)
    for i, view in enumerate(views):
        folds = list(view.scores["per_fold"].values())
        ax.plot(np.full(len(folds), i), folds, "k.", ms=6)
        ax.annotate(f"{oof[i]:.4f}", (i, oof[i]), xytext=(0, -4), textcoords="offset points", ha="center", va="top",
                    fontsize=8, color="white", fontweight="bold")
    values = [s for v in views for s in v.scores["per_fold"].values()] + oof
    ax.set_ylim(max(0.0, min(values) - 0.05), max(values) + 0.03)
    ax.set_xticks(x, [v.name for v in views], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"OOF {metric}")
    ax.set_title("OOF score (bars), per-fold scores (dots); blends orange", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return figure_to_data_uri(fig)


def plot_threshold_curves(data: ReportData) -> str:
    """Small multiples: F2 against each class's threshold, the chosen threshold marked."""
    curves, classes = data.f2_curves, data.classes
    ncols = min(6, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    fig = _new_figure(2.1 * ncols + 0.5, 1.8 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    label = "sample F2" if data.task == "multilabel" else "F2"
    for j, (ax, name) in enumerate(zip(axes, classes)):
        t = data.thresholds[j]
        ax.plot(GRID, curves[j], color="#4c72b0", lw=1.2)
        ax.axvline(t, color="#dd8452", lw=1, ls="--")
        ax.plot([t], [np.interp(t, GRID, curves[j])], "o", color="#dd8452", ms=3)
        ax.set_title(f"{name} (t={t:.3f})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    fig.suptitle(f"OOF {label} of {data.focus.name} against one class's threshold (others at their chosen thresholds)", fontsize=9)
    return figure_to_data_uri(fig)


def plot_heatmap(matrix: np.ndarray, labels_x: Sequence[str], labels_y: Sequence[str], title: str, fmt: str,
                 xlabel: str = "", ylabel: str = "", cmap: str = "viridis") -> str:
    n = max(len(labels_x), len(labels_y))
    fig = _new_figure(min(12, 2.5 + 0.6 * n), min(11, 2.0 + 0.5 * n))
    ax = fig.subplots()
    finite = matrix[np.isfinite(matrix)] if np.isfinite(matrix).any() else np.array([0.0])
    image = ax.imshow(matrix, cmap=cmap, vmin=float(finite.min()), vmax=float(finite.max()))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(labels_x)), labels_x, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels_y)), labels_y, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        # text in black or white, whichever contrasts with the cell's colour (by its luminance)
        r, g, b, _ = image.cmap(image.norm(value)) if np.isfinite(value) else (1, 1, 1, 1)
        ax.text(j, i, format(value, fmt) if np.isfinite(value) else "n/a", ha="center", va="center", fontsize=7,
                color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return figure_to_data_uri(fig)


# ----------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1150px;
       color: #222; line-height: 1.4; padding: 0 12px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #4c72b0; padding-bottom: 3px; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; } .meta { color: #555; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef2f8; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
.warn { background: #fff4e5; border-left: 4px solid #dd8452; padding: 6px 10px; margin: 4px 0; }
.good { color: #1a7f37; } .bad { color: #c62828; } nav a { margin-right: 12px; }
"""

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers as fixed decimals, NaN as 'n/a', anything else as text (not escaped)."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def table_html(table_id: str, header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c, digits))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def frame_html(table_id: str, frame: pd.DataFrame, index_name: str | None = None, digits: int = 4) -> str:
    header = ([index_name] if index_name is not None else []) + [str(c) for c in frame.columns]
    rows = [([idx] if index_name is not None else []) + list(row) for idx, row in zip(frame.index, frame.itertuples(index=False))]
    return table_html(table_id, header, rows, digits)


def img_html(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>\n{body}\n</section>\n'


def _summary_section(data: ReportData) -> str:
    metric = data.metric
    header = ["run", "kind", "method", f"OOF {metric}", "fold mean", "fold std", "per fold", "scores.json OOF"]
    if data.task == "multilabel":
        header += ["F2 tuned (thresholds.json)", "F2 held-out"]
    rows = []
    for view in data.runs:
        s = view.scores
        per_fold = "  ".join(f"{k}: {v:.4f}" for k, v in s["per_fold"].items())
        stored = (view.stored_scores or {}).get("oof", math.nan)
        row = [view.name, view.kind, view.method, s["oof"], s["fold_mean"], s["fold_std"], per_fold, stored]
        if data.task == "multilabel":
            thr = view.stored_thresholds or {}
            row += [thr.get("f2_tuned", math.nan), thr.get("f2_heldout") if thr.get("f2_heldout") is not None else math.nan]
        rows.append(row)
    extras = sorted({k for v in data.runs for k in v.scores["extra"]})
    extra_rows = [[v.name, *[v.scores["extra"].get(k, math.nan) for k in extras]] for v in data.runs]
    n = len(data.focus.run.oof)
    body = [
        f'<p class="meta">{n} training images, {len(data.classes)} classes, {len(data.models)} model run(s), '
        f"{len(data.blends)} blend(s). OOF scores are recomputed from oof.csv and labels.csv; "
        f"fold std is the population standard deviation over folds.</p>",
        table_html("scores", header, rows),
        "<h3>Other OOF numbers</h3>",
        table_html("extra-scores", ["run", *extras], extra_rows),
        img_html(plot_scores(data.runs, metric), "OOF scores per run"),
    ]
    if data.experiment_scores is not None:
        body.append("<details><summary>pipeline summary (scores.json)</summary><pre>"
                    + esc(json.dumps(data.experiment_scores, indent=2)) + "</pre></details>")
    return section("summary", "Scores", "\n".join(body))


def _curves_section(data: ReportData) -> str:
    from ..core.metrics import get_metric

    entry = get_metric(data.metric)
    parts = []
    for view in data.models:
        if not view.histories:
            parts.append(f"<h3>{esc(view.name)}</h3><p>No fold&lt;k&gt;/history.csv in {esc(view.path)}.</p>")
            continue
        last = [[k, int(h['epoch'].iloc[-1]), h["train_loss"].iloc[-1], h["valid_loss"].iloc[-1],
                 h["train_metric"].iloc[-1], h["valid_metric"].iloc[-1], h["valid_metric"].iloc[entry.best_index(h["valid_metric"])], f"{h['seconds'].sum():.1f}"]
                for k, h in view.histories.items()]
        parts.append(f"<h3>{esc(view.name)}</h3>")
        parts.append(img_html(plot_learning_curves(view, data.metric), f"learning curves of {view.name}"))
        parts.append(table_html(f"history-{view.name}", ["fold", "epochs", "train loss", "valid loss", f"train {data.metric}",
                                                           f"valid {data.metric}", f"best valid {data.metric}", "seconds"], last))
    if not parts:
        parts.append("<p>No model runs here (a blend whose members were not found).</p>")
    return section("learning-curves", "Learning curves per fold", "\n".join(parts))


def _per_class_section(data: ReportData) -> str:
    table = data.per_class.rename(columns={"f2": "F2", "auc": "AUC"})
    intro = (f"<p>Numbers of <b>{esc(data.focus.name)}</b> ({esc(data.focus.path)}) on its OOF predictions; "
             f"thresholds: {esc(data.thresholds_source)}. F2, precision, recall, AUC and accuracy are per class "
             "(that class's column against its labels).</p>")
    parts = [intro]
    if data.focus_f2 is not None:
        stored = (data.focus.stored_thresholds or {}).get("f2_tuned")
        parts.append(f'<p>Sample-averaged F2 at these thresholds: <b id="focus-f2">{data.focus_f2:.4f}</b>'
                     + (f" (thresholds.json f2_tuned: {stored:.4f})" if stored is not None else "") + "</p>")
    parts.append(frame_html("per-class", table.set_index("class"), index_name="class"))
    if data.f2_curves is not None:
        parts.append(img_html(plot_threshold_curves(data), "F2 against each class's threshold"))
    if data.per_class_by_run is not None:
        what = "F2 (each run at its own thresholds)" if data.task == "multilabel" else "recall"
        parts.append(f"<h3>Per-class {esc(what)} by run</h3>")
        parts.append(frame_html("per-class-by-run", data.per_class_by_run, index_name="class"))
    return section("per-class", "Per class", "\n".join(parts))


def _models_section(data: ReportData) -> str:
    parts = []
    if data.correlation is not None:
        corr = data.correlation
        parts.append("<p>Pearson correlation of the models' OOF probabilities (all classes flattened, rows matched by id). "
                     "Less correlated models gain more from blending.</p>")
        parts.append(img_html(plot_heatmap(corr.to_numpy(), corr.columns, corr.index, "OOF correlation", ".3f"),
                              "correlation of OOF predictions"))
        parts.append(frame_html("correlation", corr, index_name="model"))
    else:
        parts.append("<p>Only one model run: no correlation matrix.</p>")
    if len(data.blend_gains):
        gains = data.blend_gains.rename(columns={"blend_oof": "blend OOF", "best_member_oof": "best member OOF",
                                                 "best_member": "best member", "stored_gain": "scores.json gain_over_best"})
        parts.append(f"<h3>Blend gain over the best single model ({esc(data.metric)})</h3>")
        parts.append(frame_html("blend-gain", gains.drop(columns=["metric"]).set_index("blend"), index_name="blend"))
    else:
        parts.append("<p>No blend folder: no blend gain.</p>")
    return section("models", "Between models", "\n".join(parts))


def _confusion_section(data: ReportData) -> str:
    cm = data.confusion
    frame = pd.DataFrame(cm, index=data.classes, columns=data.classes)
    body = [
        f"<p>Confusion matrix of {esc(data.focus.name)}'s OOF argmax predictions: rows true class, columns predicted.</p>",
        img_html(plot_heatmap(cm.astype(float), data.classes, data.classes, "confusion matrix (OOF)", ".0f",
                              "predicted", "true", cmap="Blues"), "confusion matrix"),
        frame_html("confusion", frame, index_name="true \\ predicted"),
    ]
    return section("confusion", "Confusion matrix", "\n".join(body))


def _leaderboard_section(data: ReportData) -> str:
    c = data.comparison
    board = c.leaderboard.rename(columns={"oof": f"OOF {c.metric}", "image_size": "image size"}).set_index("run")
    parts = [f"<p>Every run of this page, best honest estimate first. Honest: {esc(c.honest_meaning)}. "
             "Seconds: training time summed over folds (models), fitting time (blends). "
             "<code>kaggle-planet compare</code> prints the same across experiments.</p>",
             frame_html("leaderboard", board, index_name="run", digits=5)]
    for name, table in c.ablations.items():
        parts.append(f"<h3>Drop-one ablation of {esc(name)}</h3><p>The blend's own method re-fitted without each member; "
                     "a negative change means the member helps.</p>")
        parts.append(frame_html(f"ablation-{name}", table.set_index("without"), index_name="without", digits=5))
    parts += [f'<div class="warn">{esc(n)}</div>' for n in c.notes]
    return section("leaderboard", "Leaderboard", "\n".join(parts))


def plot_cv_against_lb(frame: pd.DataFrame, metric: str) -> str:
    """Honest CV (OOF when no honest score was logged) against the public LB score, one dot per upload."""
    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    cv = frame["honest_score"].fillna(frame["oof_score"])
    ax.plot(cv, frame["public_score"], "o", color="#4c72b0")
    for x, y, name in zip(cv, frame["public_score"], frame["file"]):
        ax.annotate(Path(name).name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    finite = np.isfinite(cv.to_numpy(dtype=float))
    if finite.sum() >= 2:
        lo = float(min(cv[finite].min(), frame["public_score"].min()))
        hi = float(max(cv[finite].max(), frame["public_score"].max()))
        ax.plot([lo, hi], [lo, hi], "--", color="#999", lw=1, label="CV = LB")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"honest CV ({metric})")
    ax.set_ylabel("public LB")
    ax.set_title("Logged submissions: CV against public leaderboard", fontsize=10)
    ax.grid(alpha=0.3)
    return figure_to_data_uri(fig)


def _submissions_section(data: ReportData) -> str:
    frame = data.submissions
    table = pd.DataFrame({"file": frame["file"].map(lambda f: Path(f).name), "run": frame["run_dir"], "decision": frame["decision"],
                          "OOF": frame["oof_score"], "honest CV": frame["honest_score"], "public LB": frame["public_score"],
                          "private LB": frame["private_score"], "message": frame["message"]}).set_index(frame["ref"].to_numpy())
    body = ["<p>Uploads logged by <code>kaggle-planet submit</code> whose public score <code>kaggle-planet scores</code> "
            "fetched, from every experiment of this competition.</p>",
            img_html(plot_cv_against_lb(frame, data.metric), "CV against public LB"),
            frame_html("submissions", table, index_name="ref", digits=5)]
    return section("submissions", "CV against public LB", "\n".join(body))


def _provenance_section(data: ReportData) -> str:
    parts = []
    for view in data.runs:
        extra = view.run.info.extra
        commands = extra.get("commands") or []
        config = extra.get("config")
        described = {k: v for k, v in extra.items() if k not in ("config", "commands")}
        parts.append(f"<h3>{esc(view.name)} <small class=\"meta\">({esc(view.kind)}, {esc(view.path)})</small></h3>")
        if view.kind == "blend":
            parts.append("<p>members: " + esc(", ".join(view.run.info.members)) + "</p>")
        parts.append("<p>commands:</p><pre class=\"commands\">" + (esc("\n".join(map(str, commands))) or "(none recorded)") + "</pre>")
        if described:
            parts.append("<pre>" + esc(yaml.safe_dump(described, sort_keys=False)) + "</pre>")
        parts.append("<details><summary>config</summary><pre class=\"config\">"
                     + (esc(yaml.safe_dump(config, sort_keys=False)) if config is not None else "(none recorded)")
                     + "</pre></details>")
    return section("provenance", "Config and commands", "\n".join(parts))


SECTIONS: list[tuple[str, str, Callable[[ReportData], bool], Callable[[ReportData], str]]] = [
    # (id, title, shown when, renderer)
    ("summary", "Scores", lambda d: True, _summary_section),
    ("learning-curves", "Learning curves", lambda d: True, _curves_section),
    ("per-class", "Per class", lambda d: True, _per_class_section),
    ("confusion", "Confusion matrix", lambda d: d.task == "multiclass", _confusion_section),
    ("models", "Between models", lambda d: True, _models_section),
    ("leaderboard", "Leaderboard", lambda d: d.comparison is not None, _leaderboard_section),
    ("submissions", "CV against public LB", lambda d: d.submissions is not None, _submissions_section),
    ("provenance", "Config and commands", lambda d: True, _provenance_section),
]


def render_html(data: ReportData) -> str:
    """The whole page: inline CSS, PNGs as data URIs, no external resources, every text escaped. In the figures
    every string is plain text too: a class named ``$5_to_$10`` is not a mathtext formula."""
    from matplotlib import rc_context

    with rc_context({"text.parse_math": False}):
        return _page(data)


def _page(data: ReportData) -> str:
    shown = [(sid, title, render) for sid, title, when, render in SECTIONS if when(data)]
    nav = "<nav>" + "".join(f'<a href="#{esc(sid)}">{esc(title)}</a>' for sid, title, _ in shown) + "</nav>"
    warn = "".join(f'<div class="warn">{esc(w)}</div>' for w in data.warnings)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"kaggle-planet report: {data.source}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n"
        f'<p class="meta">{esc(data.competition)} ({esc(data.task)}, metric {esc(data.metric)}), '
        f"{esc(data.layout)} folder, generated {esc(stamp)}</p>\n{nav}\n{warn}\n"
        + "".join(render(data) for _, _, render in shown)
        + "</body></html>\n"
    )
