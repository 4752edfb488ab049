"""The shipped experiment configs (``configs/*.yaml``), found in a checkout or an installed wheel.

The top-level ``configs/`` folder is the one copy: ``pyproject.toml`` maps it to the package
``kaggle_planet.configs`` (package data), so a wheel installs it as ``kaggle_planet/configs/``. A config
argument is a path or a shipped config's name (``planet``, ``demo``); ``configs/planet.yaml`` that is not
a file here (an installed package run from another folder) means the shipped ``planet``.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import KagglePlanetError

_PACKAGE = Path(__file__).resolve().parents[1]  # kaggle_planet/
# installed (wheel, non-editable): kaggle_planet/configs/; a checkout (editable, PYTHONPATH): ../configs/
CONFIG_DIRS = (_PACKAGE / "configs", _PACKAGE.parent / "configs")
SUFFIX = ".yaml"


def configs_dir() -> Path:
    """The folder holding the shipped configs."""
    for folder in CONFIG_DIRS:
        if folder.is_dir() and any(folder.glob(f"*{SUFFIX}")):
            return folder
    raise KagglePlanetError(f"no shipped configs found (looked in {', '.join(map(str, CONFIG_DIRS))}); reinstall kaggle-planet")


def shipped_configs() -> dict[str, Path]:
    """name -> file of every shipped config, sorted by name."""
    return {p.stem: p for p in sorted(configs_dir().glob(f"*{SUFFIX}"))}


def is_config_source(path: Path) -> bool:
    """A regular file, or a pipe / character device read once (``--config <(...)``, ``/dev/stdin``)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def resolve_config(arg: str | Path) -> Path:
    """A config argument -> its file: an existing path as given (a pipe such as ``<(...)`` too), else a shipped
    config by name (``planet``, ``planet.yaml`` or ``configs/planet.yaml``); otherwise one line listing the
    shipped names."""
    path = Path(arg)
    if is_config_source(path):
        return path
    name = path.name.removesuffix(SUFFIX)
    if len(path.parts) == 1 or path.parent == Path("configs"):
        shipped = shipped_configs()
        if name in shipped:
            return shipped[name]
    if path.is_dir():
        raise KagglePlanetError(f"{arg}: config file not found (it is a folder); expected a YAML config file or a shipped config name")
    raise KagglePlanetError(
        f"{arg}: config file not found, and not a shipped config name; shipped: {', '.join(shipped_configs())} (kaggle-planet configs)"
    )


@dataclass(frozen=True)
class ConfigSummary:
    name: str
    competition: str
    models: list[str]
    description: str
    path: Path


def describe_config(path: Path) -> ConfigSummary:
    """Name, competition, model names and the first comment line of a config file (not validated)."""
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    comments = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    models = [m.get("name") or m.get("backbone", "?") for m in data.get("models") or [] if isinstance(m, dict)]
    return ConfigSummary(path.stem, str(data.get("competition", "?")), models, comments[0] if comments else "", path)


def format_configs() -> str:
    """The shipped configs as a table: name, competition, models, description."""
    rows = [describe_config(p) for p in shipped_configs().values()]
    head = ("name", "competition", "models", "description")
    cells = [(r.name, r.competition, ", ".join(r.models), r.description) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head[:3])]
    line = lambda c: "  ".join(f"{v:<{w}}" for v, w in zip(c[:3], widths)) + "  " + c[3]  # noqa: E731
    return "\n".join([line(head), *(line(c) for c in cells), f"({configs_dir()}; use a name where a config path goes: kaggle-planet run planet)"])
