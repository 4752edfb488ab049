"""Named presets end to end through the REAL kaggle client: the stand-in Kaggle (tests/kaggle_server.py) serves a
competition's download-all zip built from its stand-in (tests/standins.py), then ``kaggle-planet download <slug>``
-> ``init <slug>`` -> a 1-epoch ``run`` -> a submission checked against the downloaded sample submission.

The delivery shapes assumed, from what we know of each competition's download-all zip (nothing here was checked
against kaggle.com; where Kaggle re-packed an old competition's files later, both shapes are covered):

- ``cassava-leaf-disease-classification`` (2020): flat. The zip holds ``train.csv``, ``sample_submission.csv``,
  ``label_num_to_disease_map.json`` and the folders ``train_images/``, ``test_images/``, ``train_tfrecords/``,
  ``test_tfrecords/`` (the TFRecords are extras the preset ignores).
- ``dog-breed-identification`` (2017): nested zips. The zip holds ``train.zip`` (``train/<id>.jpg``), ``test.zip``
  (``test/<id>.jpg``), ``labels.csv.zip`` and ``sample_submission.csv.zip`` (one CSV each), as Kaggle's own learntools
  scripts fetch ``train.zip`` and unzip it beside itself into ``train/``. Its data page today may show the files
  unpacked; that flat shape is the download-only case ``dog-breed-identification (flat)``.
- ``dogs-vs-cats-redux-kernels-edition`` (2016): mixed. ``train.zip`` (``train/cat.<n>.jpg``, ``train/dog.<n>.jpg``)
  and ``test.zip`` (``test/<n>.jpg``) beside a plain ``sample_submission.csv``.
- ``siim-isic-melanoma-classification`` (2020): flat and deep. ``train.csv``, ``test.csv``, ``sample_submission.csv``,
  the JPEGs under ``jpeg/train/`` and ``jpeg/test/``, and beside them the same images as DICOM in ``train/`` and
  ``test/`` and as ``tfrecords/`` (extras: the preset must read ``jpeg/`` and not trip over a ``train/`` of ``.dcm``).

Zips made by Kaggle's packer and by hand differ in whether they list folders as entries of their own: the nested
zips here list them, the outer ones do not.
"""
from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kaggle_server import KEY, USER
from standins import make_standin

from kaggle_planet.cli import main
from kaggle_planet.data.competitions import COMPETITIONS, load_dataset
from kaggle_planet.kaggle import archives
from kaggle_planet.kaggle.submission import validate_submission_file

# the tiny run of tests/test_presets.py: what replaces init's recipe and backbones (init may pick tf_efficientnet_lite*)
RUN = {"folds": {"k": 2, "seed": 0}, "image_size": 32, "augment": "none", "tta": "none", "device": "cpu", "epochs": 1,
       "batch_size": 8, "num_workers": 0, "warmup_epochs": 0, "log": ["csv"], "models": [{"backbone": "test_resnet", "lr": 0.01}]}
STATE = ".kaggle-planet/"


# ------------------------------------------------------------------------------------ delivery shapes


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its POSIX path relative to ``root``, without the toolkit's state folder."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {k: v for k, v in files.items() if not k.startswith(STATE)}


def zip_of(entries: dict[str, bytes], folders: bool = False) -> bytes:
    """A deflated zip of ``entries`` (member name -> bytes); ``folders``: also list each folder as a ``name/`` entry."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        written: set[str] = set()
        for name in sorted(entries):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i]) + "/"
                if folders and folder not in written:
                    zf.writestr(folder, b"")
                    written.add(folder)
            zf.writestr(name, entries[name])
    return out.getvalue()


def under(files: dict[str, bytes], top: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k.split("/")[0] == top}


def nested(files: dict[str, bytes], zipped: dict[str, str]) -> bytes:
    """The download-all zip with each top-level entry named in ``zipped`` (entry -> inner archive name) wrapped in a
    zip of its own holding it under its own name (``train`` -> ``train.zip`` holding ``train/...``); others plain."""
    outer = {k: v for k, v in files.items() if k.split("/")[0] not in zipped}
    outer.update({archive: zip_of(under(files, top), folders=True) for top, archive in zipped.items()})
    return zip_of(outer)


def add_extras(src: Path, extras: dict[str, bytes]) -> None:
    """Files Kaggle delivers that the preset does not read (TFRecords, DICOM); they must arrive untouched."""
    for name, data in extras.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)


def _dicom(n: int) -> bytes:
    return b"\x00" * 128 + b"DICM" + bytes([n % 256]) * 16  # the preamble and magic of a DICOM file, not a real one


def cassava(src: Path) -> bytes:
    add_extras(src, {"train_tfrecords/ld_train00-1338.tfrec": b"tfrecord 0", "test_tfrecords/ld_test00-1.tfrec": b"tfrecord 1"})
    return zip_of(tree(src))


def dog_breed(src: Path) -> bytes:
    return nested(tree(src), {"train": "train.zip", "test": "test.zip", "labels.csv": "labels.csv.zip",
                              "sample_submission.csv": "sample_submission.csv.zip"})


def dog_breed_flat(src: Path) -> bytes:
    return zip_of(tree(src), folders=True)


def dogs_vs_cats(src: Path) -> bytes:
    return nested(tree(src), {"train": "train.zip", "test": "test.zip"})


def siim_isic(src: Path) -> bytes:
    names = sorted(p.stem for p in (src / "jpeg" / "train").glob("*.jpg"))[:3]
    tests = sorted(p.stem for p in (src / "jpeg" / "test").glob("*.jpg"))[:2]
    add_extras(src, {**{f"train/{n}.dcm": _dicom(i) for i, n in enumerate(names)},
                     **{f"test/{n}.dcm": _dicom(i) for i, n in enumerate(tests)},
                     "tfrecords/train00-2182.tfrec": b"tfrecord", "tfrecords/test00-687.tfrec": b"tfrecord"})
    return zip_of(tree(src))


# name -> (competition slug, builder of the download-all zip from the stand-in folder; may add Kaggle's extras to it)
DELIVERIES: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "cassava-leaf-disease-classification": ("cassava-leaf-disease-classification", cassava),
    "dog-breed-identification": ("dog-breed-identification", dog_breed),
    "dog-breed-identification (flat)": ("dog-breed-identification", dog_breed_flat),
    "dogs-vs-cats-redux-kernels-edition": ("dogs-vs-cats-redux-kernels-edition", dogs_vs_cats),
    "siim-isic-melanoma-classification": ("siim-isic-melanoma-classification", siim_isic),
}
END_TO_END = [name for name in DELIVERIES if "(" not in name]  # one full run per preset; variants download only


def serve(fake, name: str, src: Path) -> tuple[str, dict]:
    """Make the stand-in of ``name`` in ``src`` and have the fake Kaggle serve its download-all zip."""
    slug, build = DELIVERIES[name]
    facts = make_standin(slug, src)
    fake.all_zip = build(src)
    return slug, facts


def download(fake, slug: str, src: Path, data: Path, capsys) -> None:
    """``kaggle-planet download <slug>`` and what it must have done: one download-all request, the files as Kaggle
    holds them (inner archives replaced by their contents), nothing else asked of the server."""
    assert main(["download", slug, "--data-dir", str(data)]) == 0
    ready = sorted(line.removeprefix("ready: ") for line in capsys.readouterr().out.splitlines() if line.startswith("ready: "))

    # what the real client asked for: the download-all file of this competition, with the account's Basic auth, then its blob
    assert fake.calls == [("DownloadDataFiles", {"competitionName": slug})]
    assert fake.gets == [f"/blobs/all/{slug}-all.zip"]
    assert fake.auth_seen == ["Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()]
    assert fake.uploads == {}

    # what landed: exactly the competition's files, byte for byte, no archive and no scratch folder left over
    got = tree(data)
    assert got == tree(src)
    assert not [k for k in got if archives.archive_kind(k)]
    assert not [p for p in data.iterdir() if p.name.startswith(".extracting")]
    assert ready == sorted(str(data / top) for top in {k.split("/")[0] for k in got})

    # a second download finds everything in place and asks nothing
    assert main(["download", slug, "--data-dir", str(data)]) == 0
    assert len(fake.calls) == 1 and len(fake.gets) == 1
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(DELIVERIES))
def test_download_delivers_the_preset_check_reads(name, fake, tmp_path, capsys):
    """Every delivery shape, download only: the folder holds what the preset reads (check passes)."""
    src, data = tmp_path / "kaggle-side", tmp_path / "data"
    slug, facts = serve(fake, name, src)
    download(fake, slug, src, data, capsys)
    assert main(["check", "-c", slug, "-d", str(data)]) == 0
    assert "ok: dataset is valid" in capsys.readouterr().out
    table = load_dataset(slug, data)
    assert table.classes == facts["classes"]
    assert len(table.train) == 40 and len(table.test) == 12
    assert all(Path(f).is_relative_to(data) and Path(f).suffix != ".dcm" for f in table.train["file"])


@pytest.mark.parametrize("name", END_TO_END)
def test_preset_download_init_run_and_submission(name, fake, tmp_path, monkeypatch, capsys):
    src, data = tmp_path / "kaggle-side", tmp_path / "data" / name
    slug, facts = serve(fake, name, src)
    monkeypatch.chdir(tmp_path)
    download(fake, slug, src, data, capsys)

    # init writes a config for this preset and this folder; the tiny run replaces its recipe and backbones
    assert main(["init", slug, "--data-dir", str(data), "--out", "cfg.yaml"]) == 0
    out = capsys.readouterr().out
    assert f"40 training images, {len(facts['classes'])} classes, 12 test images" in out
    config = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    assert (config["competition"], config["data_dir"]) == (slug, str(data))
    assert config["models"] and all(m["backbone"] for m in config["models"])
    if facts.get("groups"):
        assert f"folds grouped by {facts['groups']}" in out
    config.update(RUN)
    config.pop("freeze_epochs", None)  # a head-only first epoch would be the whole 1-epoch run
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))

    assert main(["run", "cfg.yaml"]) == 0
    assert len(fake.calls) == 1 and len(fake.gets) == 1  # init and run never reach for the network

    submission = tmp_path / "submissions" / "cfg.csv"
    validate_submission_file(submission, slug, data)  # the toolkit's own check against the downloaded sample ...
    # ... and an independent one with pandas: the sample's header, ids and their order; values of the right kind
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    written = pd.read_csv(submission, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(sample.columns) == facts["columns"]
    assert written.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    assert written.iloc[:, 0].is_unique and len(written) == 12
    values = written.iloc[:, 1:]
    if COMPETITIONS[slug].metric == "accuracy":  # Cassava: one integer class per image
        assert set(values.iloc[:, 0]) <= set(facts["classes"])
    else:
        probs = values.astype(float).to_numpy()
        assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
        if probs.shape[1] > 1:  # Dog Breed: one probability per breed, each row summing to 1
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
