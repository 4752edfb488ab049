"""Property tests: random byte edits to a valid config file, and random ``--set`` overrides, given to the
config loader. Whatever the bytes, the loader returns a valid config or raises KagglePlanetError with a
one-line message naming the file; never another exception (a traceback for the user)."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaggle_planet.config.schema import ExperimentConfig, config_to_dict, load_config
from kaggle_planet.core.errors import KagglePlanetError

# a config touching most validators: nested mappings, lists, unions, table-checked names and their args
VALID = b"""name: fuzz
competition: planet
data_dir: data/planet
folds: {k: 3, seed: 7}
pseudo: {rounds: 1, confidence: 0.9}
device: cpu
blend: auto
decision: thresholds
image_size: 64
augment: light
tta: hflip
epochs: 4
batch_size: 16
lr: 1e-3
optimizer: adamw
weight_decay: 0.01
layer_decay: none
scheduler: cosine
warmup_epochs: 0.5
loss: focal
loss_args: {gamma: 2.0}
label_smoothing: 0.05
pos_weight: auto
mixup: {alpha: 0.4, prob: 0.5}
clip_grad: 1.0
ema: true
ema_decay: 0.99
freeze_epochs: 1
seed: 3
models:
  - backbone: test_resnet
    name: a
    lr: 2e-3
  - &b {backbone: test_resnet, name: b, epochs: 2, pretrained: false}
"""

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])

# an edit: (relative position in [0, 1), kind, byte)
EDITS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 255)),
                 min_size=1, max_size=8)


def apply_edits(data: bytes, edits: list[tuple[float, str, int]]) -> bytes:
    out = bytearray(data)
    for where, kind, byte in edits:
        i = int(where * len(out)) if out else 0
        if kind == "insert" or not out:
            out[i:i] = bytes([byte])
        elif kind == "replace":
            out[i] = byte
        else:
            del out[i]
    return bytes(out)


def load_or_refuse(path: Path, overrides: tuple[str, ...] = ()) -> ExperimentConfig | None:
    """The loaded config, or None after checking the refusal is one line naming the file."""
    try:
        cfg = load_config(path, overrides)
    except KagglePlanetError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith((str(path), "--set")), message
        return None
    assert isinstance(cfg, ExperimentConfig)
    return cfg


def test_the_base_config_is_valid(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(VALID)
    cfg = load_config(path)
    assert cfg.model_names == ["a", "b"] and cfg.resolved_model("b").epochs == 2


@SETTINGS
@given(edits=EDITS)
def test_byte_edits_load_or_are_refused_in_one_line(tmp_path, edits):
    path = tmp_path / "c.yaml"
    path.write_bytes(apply_edits(VALID, edits))
    cfg = load_or_refuse(path)
    if cfg is not None:  # what loads must also save and load back equal (the run folder's config.yaml)
        again = tmp_path / "again.yaml"
        import yaml

        again.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        assert load_config(again) == cfg


KEYS = st.sampled_from(["lr", "seed", "epochs", "folds.k", "folds.seed", "models.0.name", "models.1.epochs", "models.5.lr",
                        "loss_args.gamma", "mixup", "freeze_epochs", "batch_size", "name", "pseudo.rounds", "image_size", "x.y"])
VALUES = st.one_of(st.sampled_from(["inf", "nan", "-1", "0", "4294967296", "blend", "none", "[1, 2]", "{a: 1}", "", "'", "1e999"]),
                   st.text(max_size=12))


@SETTINGS
@given(sets=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
def test_random_overrides_load_or_are_refused_in_one_line(tmp_path, sets):
    path = tmp_path / "c.yaml"
    path.write_bytes(VALID)
    load_or_refuse(path, tuple(f"{k}={v}" for k, v in sets))
