"""The bad-input matrix, run side (issue 11, classes 4-7 and 9): configs, CSV headers and line numbers,
training numerics, outputs that must not clobber, two processes on one fold, kaggle.json.

Each case runs the real command line in-process in a fresh workspace and asserts: the exit status;
exactly one ``error:`` line on stderr (never a traceback) holding the named file/key and the problem;
and that no file outside the ones the case may write was created, changed or removed (the whole
workspace is snapshotted by content before and after). Cases where proceeding is right (exit 0) say
which files they write.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from kaggle_server import block_outside_network
from runfactory import make_invasive_data, write_run

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts, locks

SECRET = "k3y-5ecret-do-not-print-0123456789"


# ------------------------------------------------------------------------------------ workspace


@pytest.fixture(scope="module")
def template(tmp_path_factory, demo_datasets) -> Path:
    """A workspace: a minimal invasive data folder, an experiment with two model runs, their blend and
    a model folder being trained; cases copy it."""
    from kaggle_planet.ensemble.blend import blend_runs

    root = tmp_path_factory.mktemp("ws")
    rng = np.random.default_rng(0)
    y = (rng.random((20, 1)) < 0.4).astype(int)
    train_ids, test_ids = make_invasive_data(root / "data" / "inv", y, n_test=6)
    old = os.getcwd()
    os.chdir(root)  # run folders record the data folder relative to the workspace
    try:
        for m, skill in (("m1", 0.3), ("m2", 0.5)):
            oof = np.clip(y + rng.normal(0, skill, y.shape), 0.01, 0.99)
            write_run(Path("runs/exp") / m, "invasive", ["invasive"], train_ids, y, oof, np.arange(20) % 2, test_ids,
                      rng.random((6, 1)), data_dir="data/inv")
        blend_runs([Path("runs/exp/m1"), Path("runs/exp/m2")], "mean", Path("runs/exp/blend"))
    finally:
        os.chdir(old)
    training = root / "runs" / "exp" / "training"
    training.mkdir()
    (training / "config.yaml").write_text("name: exp\n")
    (training / "labels.csv").write_text("name,invasive\n1,0\n")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("keep me\n")
    (root / "home").mkdir()
    (root / "demo").symlink_to(demo_datasets["invasive"], target_is_directory=True)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash (folders: "dir") of everything under ``root`` (links not followed)."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel == "demo" or rel.startswith("demo/"):
            continue
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p) and "dir" not in (before.get(p), after.get(p))}


# ----------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: tuple[str, ...]  # substrings of the error line (exit 2) or of stdout (exit 0)
    files: dict[str, bytes | str] = field(default_factory=dict)  # written before the run ({demo}: the demo data folder)
    rc: int = 2
    may_write: tuple[str, ...] = ()  # glob patterns of the files the command may create or change
    setup: Callable[[Path], None] | None = None
    kaggle: bool = False  # HOME is the workspace's home/, Kaggle variables unset, no network


CONFIG = """name: exp
competition: invasive
data_dir: {demo}
folds: {k: 2, seed: 0}
image_size: 32
tta: none
epochs: 1
batch_size: 8
num_workers: 0
models:
  - backbone: test_resnet
    name: tiny
"""


def cfg(extra: str = "", model: str = "") -> str:
    """The valid config with ``extra`` top-level lines and ``model`` lines in the model entry."""
    text = CONFIG + "".join(f"    {line}\n" for line in model.splitlines() if line)
    return text + extra


def config_case(case_id: str, text: str | bytes, *expect: str, sets: tuple[str, ...] = (), path: str = "c.yaml") -> Case:
    argv = ["train", path] + [a for s in sets for a in ("--set", s)]
    return Case(case_id, argv, (path, *expect), files={path: text})


CONFIG_CASES = [
    # duplicate keys: named, with both lines
    config_case("dup-top-key", cfg("lr: 0.1\nlr: 0.2\n"), "line 14: duplicate key 'lr' (first on line 13)"),
    config_case("dup-model-key", cfg(model="epochs: 1\nepochs: 2"), "duplicate key 'epochs'"),
    config_case("dup-folds-key", CONFIG.replace("{k: 2, seed: 0}", "{k: 2, k: 3}"), "duplicate key 'k'"),
    config_case("dup-args-key", cfg("loss: focal\nloss_args:\n  gamma: 1\n  gamma: 2\n"), "duplicate key 'gamma'"),
    config_case("dup-name-key", "name: a\nname: b\n", "line 2: duplicate key 'name'"),
    config_case("dup-models-list", cfg("models: []\n"), "duplicate key 'models'"),
    # encodings
    config_case("utf16-le", b"\xff\xfe" + cfg().encode("utf-16-le"), "UTF-16", "expected UTF-8"),
    config_case("utf16-be", b"\xfe\xff" + cfg().encode("utf-16-be"), "UTF-16", "expected UTF-8"),
    config_case("utf16-default", cfg().encode("utf-16"), "UTF-16", "expected UTF-8"),
    config_case("utf32", cfg().encode("utf-32"), "UTF-32", "expected UTF-8"),
    config_case("binary-png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xff", "not UTF-8 text", "expected a UTF-8 YAML file"),
    config_case("latin1", cfg("# caf\xe9\n").encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    config_case("nul-byte", cfg("\x00\n"), "not valid YAML"),
    config_case("gzip-bytes", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb", "not UTF-8 text"),
    # structure
    config_case("empty-file", "", "name: missing required key"),
    config_case("top-list", "- a\n- b\n", "expected a mapping of keys"),
    config_case("top-scalar", "just text\n", "expected a mapping of keys"),
    config_case("bad-yaml", "name: [a\n", "not valid YAML"),
    config_case("tab-indent", "name: a\n\tlr: 1\n", "not valid YAML"),
    config_case("python-tag", cfg("seed: !!python/object/apply:os.system ['true']\n"), "not valid YAML"),
    config_case("unhashable-key", cfg("? [a, b]\n: 1\n"), "not valid YAML"),
    config_case("deep-nesting", "a: " + "[" * 3000 + "]" * 3000 + "\n", "c.yaml"),
    config_case("int-key", cfg("1: x\n"), "1: unknown key"),
    # numeric ranges
    config_case("seed-2**32", cfg("seed: 4294967296\n"), "seed: expected an integer in [0, 4294967295], got 4294967296"),
    config_case("seed-negative", cfg("seed: -1\n"), "seed: expected an integer in [0, 4294967295]"),
    config_case("seed-huge", cfg("seed: 1000000000000000000000\n"), "seed: expected an integer in [0, 4294967295]"),
    config_case("seed-float", cfg("seed: 1.5\n"), "seed: expected an integer"),
    config_case("folds-seed-2**32", CONFIG.replace("seed: 0", "seed: 4294967296"), "folds.seed: expected an integer in [0, 4294967295]"),
    config_case("folds-seed-negative", CONFIG.replace("seed: 0", "seed: -5"), "folds.seed: expected an integer in [0, 4294967295]"),
    config_case("seed-by-set", cfg(), "seed:", "(from --set seed=99999999999)", sets=("seed=99999999999",)),
    config_case("model-seed", cfg(model="seed: 4294967296"), "models.0.seed: expected an integer in [0, 4294967295]"),
    config_case("lr-inf", cfg("lr: .inf\n"), "lr: expected a number in (0.0, inf)"),
    config_case("lr-nan", cfg("lr: .nan\n"), "lr: expected a number in (0.0, inf)"),
    config_case("lr-1e999", cfg("lr: 1e999\n"), "lr: expected a number in (0.0, inf)"),
    config_case("lr-negative-inf", cfg("lr: -.inf\n"), "lr: expected a number in (0.0, inf)"),
    config_case("lr-zero", cfg("lr: 0\n"), "lr: expected a number in (0.0, inf)"),
    config_case("lr-text", cfg("lr: fast\n"), "lr: expected a number in (0.0, inf), got 'fast'"),
    config_case("lr-inf-by-set", cfg(), "lr:", "(from --set lr=inf)", sets=("lr=inf",)),
    config_case("model-lr-nan", cfg(model="lr: .nan"), "models.0.lr: expected a number"),
    config_case("clip-grad-inf", cfg("clip_grad: .inf\n"), "clip_grad: expected a number in (0.0, inf) or none"),
    config_case("min-lr-nan", cfg("min_lr: .nan\n"), "min_lr: expected a number"),
    # reserved model names (the experiment folder's own entries)
    config_case("name-blend", cfg(model="name: blend").replace("    name: tiny\n", "", 1), "models.0.name: model name 'blend' is reserved"),
    config_case("name-Blend", cfg(model="name: Blend").replace("    name: tiny\n", "", 1), "models.0.name", "reserved"),
    config_case("name-scores", cfg(model="name: scores.json").replace("    name: tiny\n", "", 1), "models.0.name", "'scores.json' is reserved"),
    config_case("name-submission", cfg(model="name: submission.csv").replace("    name: tiny\n", "", 1), "models.0.name", "reserved"),
    config_case("name-report", cfg(model="name: report.html").replace("    name: tiny\n", "", 1), "models.0.name", "reserved"),
    config_case("name-pseudo", cfg(model="name: pseudo.json").replace("    name: tiny\n", "", 1), "models.0.name", "reserved"),
    config_case("name-blend-by-set", cfg(), "models.0.name", "reserved", "(from --set models.0.name=blend)", sets=("models.0.name=blend",)),
    config_case("name-second-model", cfg("").replace("    name: tiny\n", "    name: tiny\n  - backbone: test_resnet\n    name: BLEND\n"),
                "models.1.name", "reserved"),
    config_case("name-duplicate", cfg("").replace("    name: tiny\n", "    name: tiny\n  - backbone: test_resnet\n    name: tiny\n"),
                "models.1.name: duplicate model name 'tiny'"),
    # freeze_epochs and epochs; mixing and batch_size
    config_case("freeze-equals-epochs", cfg("freeze_epochs: 1\n"), "freeze_epochs: freeze_epochs 1 >= epochs 1"),
    config_case("freeze-above-epochs", cfg("freeze_epochs: 5\n"), "freeze_epochs: freeze_epochs 5 >= epochs 1"),
    config_case("model-epochs-below-freeze", cfg("freeze_epochs: 2\nepochs: 4\n", model="epochs: 2").replace("epochs: 1\n", "", 1),
                "models.0.epochs: freeze_epochs 2 >= epochs 2"),
    config_case("model-freeze", cfg(model="freeze_epochs: 3"), "models.0.freeze_epochs: freeze_epochs 3 >= epochs 1"),
    config_case("freeze-by-set", cfg(), "freeze_epochs", "(from --set freeze_epochs=1)", sets=("freeze_epochs=1",)),
    config_case("mixup-batch-1", cfg("batch_size: 1\nmixup: {alpha: 0.4}\n").replace("batch_size: 8\n", ""), "mixup mixes pairs", "batch_size >= 2"),
    config_case("cutmix-model-batch-1", cfg("cutmix: {alpha: 1.0}\n", model="batch_size: 1"), "models.0.batch_size", "cutmix mixes pairs"),
    # the file itself
    Case("config-missing", ["train", "nope.yaml"], ("nope.yaml: config file not found",)),
    Case("config-is-folder", ["train", "notes"], ("notes: config file not found (it is a folder)",)),
    Case("bad-set-syntax", ["train", "c.yaml", "--set", "lr"], ("--set 'lr'", "expected KEY=VALUE"), files={"c.yaml": cfg()}),
    config_case("set-list-index", cfg(), "no list entry '3'", sets=("models.3.epochs=2",)),
]


def labels_case(case_id: str, text: str, *expect: str, rc: int = 2) -> Case:
    """``folds`` on a copy of the minimal data folder whose train_labels.csv is ``text``."""
    return Case(case_id, ["folds", "-c", "invasive", "-d", "data/inv", "--k", "2"], expect,
                files={"data/inv/train_labels.csv": text}, rc=rc, may_write=("folds/*",) if rc == 0 else ())


ROWS = "".join(f"{i},{i % 2}\n" for i in range(1, 21))
CSV_CASES = [
    labels_case("header-spaces", " name , invasive \n" + ROWS, "wrote folds/invasive_k2_s42.csv", rc=0),
    labels_case("header-tab-space", "name\t,invasive\n".replace("\t", " ") + ROWS, "wrote folds/", rc=0),
    labels_case("header-bom-and-spaces", "\ufeffname , invasive\n" + ROWS, "wrote folds/", rc=0),
    labels_case("header-twice-after-strip", "name, name ,invasive\n" + ROWS, "line 1: column 'name' appears twice"),
    labels_case("line-after-blank-lines", "name,invasive\n1,0\n\n\n2,7\n" + ROWS[8:], "train_labels.csv: line 5", "invasive is '7'"),
    labels_case("line-after-spaces-line", "name,invasive\n1,0\n   \n2,x\n", "line 4", "invasive is 'x'"),
    labels_case("line-after-quoted-break", 'name,invasive\n1,"0"\n"2\n",1\n3,9\n', "line 5", "invasive is '9'"),
    labels_case("line-after-leading-blank", "\n\nname,invasive\n1,0\n2,2\n", "line 5"),
    labels_case("duplicate-id-lines", "name,invasive\n1,0\n\n2,1\n\n1,1\n", "line 6: duplicate name '1' (first on line 2)"),
    labels_case("empty-id-line", "name,invasive\n1,0\n\n ,1\n", "line 4: empty name"),
    labels_case("non-integer-name-line", "name,invasive\n\n\nabc,1\n", "line 4: name 'abc' is not an integer"),
    labels_case("crlf-blank-lines", "name,invasive\r\n1,0\r\n\r\n2,5\r\n", "line 4", "invasive is '5'"),
]


def _training_case(case_id: str, extra: str, *expect: str, rc: int = 2, may_write: tuple[str, ...] = ()) -> Case:
    return Case(case_id, ["train", "c.yaml", "--device", "cpu"], expect, files={"c.yaml": cfg(extra)}, rc=rc,
                may_write=("folds/*", "runs/exp/tiny/*", *may_write))


NUMERIC_CASES = [
    _training_case("lr-diverges", "lr: 1.0e+30\n", "in epoch 1 at update", "(lr ", "training diverged", "lower lr", "clip_grad"),
    Case("batch-1-at-1x1", ["train", "c.yaml", "--device", "cpu", "--folds", "0"], ("one value per channel", "batch_size >= 2"),
         files={"c.yaml": CONFIG.replace("batch_size: 8", "batch_size: 1")}, may_write=("folds/*", "runs/exp/tiny/*")),
    Case("batch-1-by-set", ["train", "c.yaml", "--device", "cpu", "--folds", "1", "--set", "models.0.batch_size=1"],
         ("one value per channel", "batch_size >= 2"), files={"c.yaml": cfg()}, may_write=("folds/*", "runs/exp/tiny/*")),
]


def _lock(holder: dict) -> str:
    return json.dumps({"host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", "command": "kaggle-planet train c.yaml", **holder})


def _live_pid(root: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _LIVE.append(proc)
    (root / "runs/exp/tiny/fold0").mkdir(parents=True, exist_ok=True)
    (root / "runs/exp/tiny/fold0/train.lock").write_text(_lock({"pid": proc.pid}))


_LIVE: list[subprocess.Popen] = []

LOCK_CASES = [
    Case("lock-live-holder", ["train", "c.yaml", "--device", "cpu", "--folds", "0"], ("runs/exp/tiny/fold0/train.lock", "model tiny fold 0 is being trained by pid", "--wait"),
         files={"c.yaml": cfg()}, setup=_live_pid, may_write=("folds/*", "runs/exp/tiny/config.yaml", "runs/exp/tiny/labels.csv")),
    Case("lock-other-host", ["train", "c.yaml", "--device", "cpu", "--folds", "0"], ("train.lock", "on other-machine", "delete train.lock if that process is gone"),
         files={"c.yaml": cfg(), "runs/exp/tiny/fold0/train.lock": _lock({"pid": 1, "host": "other-machine"})},
         may_write=("folds/*", "runs/exp/tiny/config.yaml", "runs/exp/tiny/labels.csv")),
    Case("lock-live-holder-run", ["run", "c.yaml", "--device", "cpu"], ("runs/exp/tiny/fold0/train.lock", "being trained by pid"),
         files={"c.yaml": cfg()}, setup=_live_pid, may_write=("folds/*", "runs/exp/tiny/config.yaml", "runs/exp/tiny/labels.csv")),
    Case("lock-other-host-fold1", ["train", "c.yaml", "--device", "cpu", "--folds", "1"], ("runs/exp/tiny/fold1/train.lock", "model tiny fold 1", "on gpu-box"),
         files={"c.yaml": cfg(), "runs/exp/tiny/fold1/train.lock": _lock({"pid": 1, "host": "gpu-box"})},
         may_write=("folds/*", "runs/exp/tiny/config.yaml", "runs/exp/tiny/labels.csv")),
]


def _out(case_id: str, argv: list[str], *expect: str, rc: int = 2, may_write: tuple[str, ...] = (), files: dict | None = None) -> Case:
    return Case(case_id, argv, expect, rc=rc, may_write=may_write, files=files or {})


BLEND = ["blend", "runs/exp/m1", "runs/exp/m2", "--out"]
SUBMIT = ["submission", "runs/exp/blend", "--out"]
OUTPUT_CASES = [
    _out("blend-into-model-run", ["blend", "runs/exp/m1", "--out", "runs/exp/m2"], "runs/exp/m2: is a model's run folder"),
    _out("blend-into-training-model", BLEND + ["runs/exp/training"], "runs/exp/training: is a model's run folder"),
    _out("blend-into-experiment", BLEND + ["runs/exp"], "runs/exp: is an experiment folder"),
    _out("blend-into-experiment-slash", BLEND + ["runs/exp/"], "runs/exp: is an experiment folder"),
    _out("blend-into-file", BLEND + ["notes/todo.txt"], "notes/todo.txt: exists and is not a folder"),
    _out("blend-into-other-files", BLEND + ["notes"], "notes: holds other files (todo.txt)"),
    _out("blend-into-member", BLEND + ["runs/exp/m1"], "runs/exp/m1: the blend's output folder must not be one of its members"),
    _out("blend-replaces-blend", BLEND + ["runs/exp/blend"], "wrote blend in runs/exp/blend", rc=0, may_write=("runs/exp/blend/*",)),
    _out("blend-new-folder-slash", BLEND + ["runs/exp/b2/"], "wrote blend in runs/exp/b2", rc=0, may_write=("runs/exp/b2/*",)),
    _out("blend-empty-folder", BLEND + ["home"], "wrote blend in home", rc=0, may_write=("home/*",)),
    _out("submission-into-run-folder", SUBMIT + ["runs/exp/m1"], "runs/exp/m1: is a run folder"),
    _out("submission-into-experiment", SUBMIT + ["runs/exp/"], "runs/exp/: is a run folder"),
    _out("submission-onto-oof", SUBMIT + ["runs/exp/m1/oof.csv"], "runs/exp/m1/oof.csv: lies inside the run folder runs/exp/m1"),
    _out("submission-new-file-in-run", SUBMIT + ["runs/exp/blend/sub.csv"], "lies inside the run folder runs/exp/blend"),
    _out("submission-in-fold-folder", SUBMIT + ["runs/exp/training/fold0/sub.csv"], "lies inside the run folder runs/exp/training"),
    _out("submission-onto-sample", SUBMIT + ["data/inv/sample_submission.csv"], "data/inv/sample_submission.csv: is a file of the data folder"),
    _out("submission-onto-labels", SUBMIT + ["data/inv/train_labels.csv"], "is a file of the data folder"),
    _out("submission-not-csv", SUBMIT + ["sub.txt"], "sub.txt: a submission is a .csv file"),
    _out("submission-onto-notes", SUBMIT + ["notes/todo.txt"], "a submission is a .csv file"),
    _out("submission-folder-resolved", SUBMIT + ["notes"], "wrote notes/exp_blend.csv", rc=0, may_write=("notes/exp_blend.csv*",)),
    _out("submission-slash-resolved", SUBMIT + ["subs/"], "wrote subs/exp_blend.csv", rc=0, may_write=("subs/exp_blend.csv*",)),
    _out("report-onto-oof", ["report", "runs/exp/m1", "--out", "runs/exp/m1/oof.csv"], "runs/exp/m1/oof.csv: exists and is not an HTML report"),
    _out("report-onto-run-json", ["report", "runs/exp/blend", "--out", "runs/exp/m2/run.json"], "exists and is not an HTML report"),
    _out("report-onto-notes", ["report", "runs/exp/m1", "--out", "notes/todo.txt"], "notes/todo.txt: exists and is not an HTML report"),
    _out("report-folder-is-report", ["report", "runs/exp/m1", "--out", "notes"], "notes/report.html: is a folder",
         files={"notes/report.html/keep.txt": "x"}),
    _out("report-folder-resolved", ["report", "runs/exp/m1", "--out", "notes"], "wrote notes/report.html", rc=0, may_write=("notes/report.html",)),
    _out("report-slash-resolved", ["report", "runs/exp/m1", "--out", "out/"], "wrote out/report.html", rc=0, may_write=("out/report.html",)),
]


def kaggle_case(case_id: str, content: str | bytes | None, *expect: str, where: str = "home/.kaggle/kaggle.json") -> Case:
    files = {where: b"" if content is None else content}
    return Case(case_id, ["scores", "-c", "planet"], ("kaggle.json", *expect), files=files, kaggle=True)


KAGGLE_CASES = [
    kaggle_case("kaggle-json-invalid", '{"username": "me", "key": "' + SECRET + '"', "is not valid JSON (line 1"),
    kaggle_case("kaggle-json-trailing-comma", '{"username": "me", "key": "' + SECRET + '",}', "is not valid JSON"),
    kaggle_case("kaggle-json-array", '["me", "' + SECRET + '"]', "holds an array, expected a JSON object"),
    kaggle_case("kaggle-json-string", '"' + SECRET + '"', "holds a string, expected a JSON object"),
    kaggle_case("kaggle-json-null", "null", "holds null"),
    kaggle_case("kaggle-json-number", "42", "holds a number"),
    kaggle_case("kaggle-json-no-key", '{"username": "me"}', "has no field 'key'"),
    kaggle_case("kaggle-json-no-username", '{"key": "' + SECRET + '"}', "has no field 'username'"),
    kaggle_case("kaggle-json-key-number", '{"username": "me", "key": 12345678901234}', "field 'key' is not a non-empty string"),
    kaggle_case("kaggle-json-key-empty", '{"username": "me", "key": ""}', "field 'key' is not a non-empty string"),
    kaggle_case("kaggle-json-utf16", ('{"username": "me", "key": "' + SECRET + '"}').encode("utf-16"), "is not UTF-8 text"),
    kaggle_case("kaggle-json-empty", "", "is not valid JSON"),
    kaggle_case("kaggle-json-folder", None, "is a folder", where="home/.kaggle/kaggle.json/x"),
    kaggle_case("kaggle-json-config-dir", "{", "is not valid JSON", where="kcfg/kaggle.json"),
]

CASES = CONFIG_CASES + CSV_CASES + NUMERIC_CASES + LOCK_CASES + OUTPUT_CASES + KAGGLE_CASES


# ------------------------------------------------------------------------------------ the runner


def _write(root: Path, files: dict[str, bytes | str], demo: Path) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content.replace("{demo}", str(demo)) if "{demo}" in content else content, encoding="utf-8")
        else:
            path.write_bytes(content)


@pytest.fixture
def workspace(template, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def _kaggle_env(root: Path, monkeypatch, case: Case) -> None:
    monkeypatch.setenv("HOME", str(root / "home"))
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(var, raising=False)
    if "kcfg/" in next(iter(case.files), ""):
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(root / "kcfg"))
    block_outside_network(monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, workspace: Path, template: Path, capsys, monkeypatch):
    demo = (template / "demo").resolve()
    _write(workspace, case.files, demo)
    if case.kaggle:
        _kaggle_env(workspace, monkeypatch, case)
        if case.id == "kaggle-json-folder":
            (workspace / "home/.kaggle/kaggle.json/x").unlink()
    if case.setup is not None:
        case.setup(workspace)
    before = snapshot(workspace)
    capsys.readouterr()
    try:
        rc = main(case.argv)
    finally:
        while _LIVE:
            proc = _LIVE.pop()
            proc.kill()
            proc.wait()
    out, err = capsys.readouterr()
    after = snapshot(workspace)

    assert "Traceback" not in err
    assert rc == case.rc, err
    if case.rc == 2:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.count("\n") == 1, err
        for text in case.expect:
            assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    else:
        for text in case.expect:
            assert text in out, f"{text!r} not in {out!r}"
    assert SECRET not in out + err
    unexpected = {p for p in changed(before, after) if not any(fnmatch.fnmatch(p, pat) for pat in case.may_write)}
    assert not unexpected, f"files changed outside {case.may_write}: {sorted(unexpected)}"


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 75 and len({c.id for c in CASES}) == len(CASES)


# -------------------------------------------------------------- behaviour behind the one-liners


def test_reserved_names_are_what_the_writers_use():
    """The names a model may not take are the names the run, pseudo-labelling and report write."""
    from kaggle_planet import pipeline
    from kaggle_planet.ensemble import pseudo
    from kaggle_planet.study import report

    assert {pipeline.BLEND_DIR, artifacts.SCORES, artifacts.SUBMISSION_COPY, pseudo.PSEUDO, report.REPORT} == set(artifacts.EXPERIMENT_ENTRIES)


def test_duplicate_key_check_leaves_yaml_merges_alone(tmp_path):
    """Overriding a key brought in by a merge (<<: *anchor) is what merges are for: not a duplicate."""
    from kaggle_planet.config.schema import load_config

    path = tmp_path / "m.yaml"
    path.write_text("name: m\ncompetition: invasive\ndata_dir: d\nmodels:\n  - &base {backbone: test_resnet, name: a, epochs: 3}\n"
                    "  - <<: *base\n    name: b\n    epochs: 5\n")
    cfg = load_config(path)
    assert [m.name for m in cfg.models] == ["a", "b"] and cfg.resolved_model("b").epochs == 5


def test_utf8_bom_config_loads(tmp_path):
    from kaggle_planet.config.schema import load_config

    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + b"name: m\ncompetition: invasive\ndata_dir: d\nmodels: [{backbone: test_resnet}]\n")
    assert load_config(path).name == "m"


def test_csv_line_numbers_match_the_file(tmp_path):
    """Every reported line is the physical line holding that row, whatever precedes it."""
    from kaggle_planet.data.competitions import csv_line, read_string_csv

    text = '\n a , b \n1,x\n\n"2\nmore",y\n   \n3,z\r\n'
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    frame = read_string_csv(path, "test")
    assert list(frame.columns) == ["a", "b"]
    physical = text.split("\n")
    for row in range(len(frame)):
        line = csv_line(frame, row)
        assert physical[line - 1].lstrip('"').startswith(frame["a"].iloc[row].split("\n")[0])


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is now free (reuse within the test is vanishingly unlikely)
    path = tmp_path / "fold0" / locks.LOCK
    path.parent.mkdir()
    path.write_text(_lock({"pid": proc.pid}))
    with locks.holding(path, "model m fold 0"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert "taking over a stale lock" in caplog.text and str(proc.pid) in caplog.text
    assert not path.exists()


def test_unreadable_old_lock_is_taken_over_and_a_fresh_one_is_not_yet(tmp_path):
    path = tmp_path / locks.LOCK
    path.write_text("")
    old = time.time() - 60
    os.utime(path, (old, old))
    assert locks.try_acquire(path) is None and json.loads(path.read_text())["pid"] == os.getpid()


def test_wait_takes_the_lock_once_the_holder_lets_go(tmp_path, monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / locks.LOCK
        path.write_text(_lock({"pid": proc.pid}))
        with pytest.raises(locks.KagglePlanetError, match=f"pid {proc.pid}"):
            locks.acquire(path, "model m fold 0")
        threading.Timer(0.3, path.unlink).start()
        start = time.time()
        locks.acquire(path, "model m fold 0", wait=True, poll=0.05)
        assert time.time() - start >= 0.25 and json.loads(path.read_text())["pid"] == os.getpid()
        locks.release(path)
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait()


def test_release_never_removes_someone_elses_lock(tmp_path):
    path = tmp_path / locks.LOCK
    path.write_text(_lock({"pid": 1}))
    locks.release(path)
    assert path.exists()


def test_two_processes_one_fold_exactly_one_wins(tmp_path):
    """Processes racing for one lock: exactly one takes it (O_EXCL), the others name it as holder."""
    path = tmp_path / locks.LOCK
    # each process stays alive until all three have tried (a loser must not find a winner already gone)
    code = ("import os, sys, time; from pathlib import Path; from kaggle_planet.core import locks; "
            "path = Path(sys.argv[1]); h = locks.try_acquire(path); print('won' if h is None else f'lost {h[\"pid\"]}', flush=True); "
            "(path.parent / f'tried-{os.getpid()}').touch(); end = time.time() + 120\n"
            "while len(list(path.parent.glob('tried-*'))) < 3 and time.time() < end: time.sleep(0.05)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    winners = [p.pid for p, o in zip(procs, outs) if o == "won"]
    assert len(winners) == 1, outs
    assert all(o == f"lost {winners[0]}" for o in outs if o != "won"), outs


def test_kaggle_json_broken_but_environment_credentials_only_warn(tmp_path, monkeypatch, caplog):
    from kaggle_planet.kaggle import client as kaggle_api

    (tmp_path / "kaggle.json").write_text('{"username": "me", "key": "' + SECRET + '"')
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    kaggle_api._check_kaggle_json(str(tmp_path), str(tmp_path / "kaggle.json"))
    assert "is not valid JSON" in caplog.text and SECRET not in caplog.text
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(kaggle_api.KagglePlanetError, match="is not valid JSON") as err:
        kaggle_api._check_kaggle_json(str(tmp_path), str(tmp_path / "kaggle.json"))
    assert SECRET not in str(err.value)
    assert kaggle_api.kaggle_json_problem(_valid_json(tmp_path)) is None


def _valid_json(tmp_path: Path) -> Path:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"username": "me", "key": SECRET}))
    return path


# ------------------------------------------------------------------------------ training numerics


def _trainer(model, lr: float = 0.1):
    import torch

    from kaggle_planet.recipe.engine import Precision, Trainer

    opt = torch.optim.SGD(model.parameters(), lr=lr)

    class Schedule:
        def step_update(self, step):
            pass

    return Trainer(optimizer=opt, schedule=Schedule(), loss_fn=torch.nn.BCEWithLogitsLoss(), activation=torch.sigmoid,
                   precision=Precision(torch.device("cpu")), scaler=torch.amp.GradScaler("cpu", enabled=False))


def test_non_finite_loss_stops_before_the_update(monkeypatch):
    """The batch whose loss is NaN raises before the optimizer step: the weights stay as they were."""
    import torch

    from kaggle_planet.recipe.engine import NonFiniteError, train_one_epoch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    images = torch.rand(6, 3, 2, 2)
    images[4:] = float("nan")  # the third batch of two
    loader = [(images[i:i + 2], torch.ones(2, 1), torch.arange(i, i + 2)) for i in range(0, 6, 2)]
    trainer = _trainer(model)
    steps = []
    original_step = trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (steps.append(1), original_step(*a, **k)))
    with pytest.raises(NonFiniteError, match=r"training loss is nan in epoch 3 at update 2 \(lr 0.1\)") as err:
        train_one_epoch(model, loader, trainer, epoch=2, step=0, show_progress=False)
    assert len(steps) == 2 and "\n" not in str(err.value)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_best_checkpoint_is_never_saved_with_non_finite_weights():
    import torch

    from kaggle_planet.recipe.engine import NonFiniteError
    from kaggle_planet.train.trainer import _check_finite_weights

    _check_finite_weights({"w": torch.ones(3), "n": torch.tensor(5)}, 0, 1, 0.1, None)
    with pytest.raises(NonFiniteError, match="weight w is nan/inf in epoch 2 at update 7"):
        _check_finite_weights({"w": torch.tensor([1.0, float("inf")])}, 1, 7, 0.1, None)


def test_diverged_training_leaves_no_best_checkpoint(workspace, template, capsys):
    demo = (template / "demo").resolve()
    (workspace / "c.yaml").write_text(cfg("lr: 1.0e+30\n").replace("{demo}", str(demo)))
    assert main(["train", "c.yaml", "--device", "cpu", "--folds", "0"]) == 2
    fold = workspace / "runs/exp/tiny/fold0"
    assert not (fold / "best.pt").exists() and not (fold / "last.pt").exists() and not (fold / locks.LOCK).exists()


def test_batch_size_1_trains_when_the_feature_map_allows(workspace, template, capsys):
    """batch_size 1 (valid per the README) trains where BatchNorm sees more than one value per channel."""
    demo = (template / "demo").resolve()
    (workspace / "c.yaml").write_text(cfg("image_size: 64\n").replace("image_size: 32\n", "").replace("batch_size: 8", "batch_size: 1")
                                      .replace("{demo}", str(demo)))
    assert main(["train", "c.yaml", "--device", "cpu", "--folds", "0"]) == 0, capsys.readouterr().err
    done = json.loads((workspace / "runs/exp/tiny/fold0/done.json").read_text())
    assert done["epochs_run"] == 1 and np.isfinite(done["best_score"])


@pytest.mark.slow  # a 2-process torchrun job: ~15 s of process start-up
def test_torchrun_job_on_a_locked_fold_stops_every_rank(workspace, template):
    """Rank 0 holds the lock for the job; when it cannot, every rank stops with the holder named (none is
    left waiting in a barrier)."""
    demo = (template / "demo").resolve()
    (workspace / "c.yaml").write_text(cfg().replace("{demo}", str(demo)))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        lock = workspace / "runs/exp/tiny/fold0" / locks.LOCK
        lock.parent.mkdir(parents=True)
        lock.write_text(_lock({"pid": holder.pid}))
        cli = [sys.executable, "-c", "import sys; from kaggle_planet.cli import main; sys.exit(main())"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python", *cli,
               "train", "c.yaml", "--device", "cpu", "--folds", "0"]
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=240)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all(f"being trained by pid {holder.pid}" in line for line in errors), result.stderr[-3000:]
    assert not (lock.parent / "best.pt").exists() and json.loads(lock.read_text())["pid"] == holder.pid
