"""Hostile or huge configs (issue 20, class 3): YAML alias bombs and values that would make a giant error line.

The command-line cases run ``train`` in-process on a config in a fresh folder and assert: exit status 2, exactly
one ``error:`` line naming the file and the problem, quickly, short, and no file created or changed.
"""
from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path

import pytest
import yaml

from kaggle_planet.cli import main
from kaggle_planet.config import overrides
from kaggle_planet.config.overrides import UniqueKeyLoader, parse_override
from kaggle_planet.core.errors import MAX_LINE, KagglePlanetError


def laughs(levels: int, width: int = 9, under: str | None = None) -> str:
    """The "billion laughs": ``levels`` anchors, each a list of ``width`` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    if under is None:
        return "\n".join(lines) + "\n"
    return f"{under}:\n" + "".join(f"  {line}\n" for line in lines)


def merges(levels: int, under: str) -> str:
    """The same growth through merge keys: each mapping merges the one before and lists it 9 times."""
    lines = [f"m0: &m0 {{a0: [{', '.join(['lol'] * 9)}]}}"]
    lines += [f"m{i}: &m{i} {{<<: *m{i - 1}, a{i}: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, levels)]
    return f"{under}:\n" + "".join(f"  {line}\n" for line in lines)


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")}


CASES = {
    # a 337-byte file: 9^8 = 43 million strings under `name`, printed whole in the error line before
    "bomb-under-a-printed-key": (laughs(8, under="name"), ("line 7: aliases expand this value to", "more than the 100000", "alias bomb")),
    "bomb-at-top-level": (laughs(9), ("aliases expand this value to", "alias bomb")),
    "bomb-in-a-model": ("models:\n  - " + laughs(8, under="backbone").replace("\n  ", "\n      ").rstrip() + "\n", ("aliases expand",)),
    "bomb-by-merge-keys": (merges(8, under="loss_args"), ("aliases expand",)),
    "alias-to-its-own-ancestor": ("name: &n [a, *n]\n", ("line 1: alias *n refers to a value that contains it",)),
    # no alias: a huge value still gives a bounded line, its start and end kept
    "huge-value-no-alias": ("name: [" + ", ".join(f"x{i}" for i in range(5000)) + "]\n", ("name: expected a folder-safe name", "characters cut]", "x4999")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_config_gives_one_short_line(case, tmp_path, monkeypatch, capsys):
    text, expect = CASES[case]
    monkeypatch.chdir(tmp_path)
    Path("bomb.yaml").write_text(text)
    before = snapshot(tmp_path)
    started = time.perf_counter()
    rc = main(["train", "bomb.yaml"])
    took = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert "Traceback" not in err and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.count("\n") == 1, err[:3000]
    assert errors[0].startswith("error: bomb.yaml: ")
    for word in expect:
        assert word in errors[0], f"{word!r} not in {errors[0][:3000]!r}"
    assert len(errors[0]) <= len("error: ") + MAX_LINE
    assert took < 5, f"{took:.1f} s"
    assert snapshot(tmp_path) == before


def test_aliases_below_the_bound_and_merges_load():
    text = ("defaults: &d {epochs: 2, lr: 0.001}\n"
            "models:\n  - {<<: *d, backbone: a}\n  - {<<: *d, backbone: b, lr: 0.01}\n"
            + laughs(4, width=9, under="shared"))  # 9^4 = 6561 strings: a large but honest use of aliases
    data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    assert data["models"] == [{"epochs": 2, "lr": 0.001, "backbone": "a"}, {"epochs": 2, "lr": 0.01, "backbone": "b"}]
    assert len(data["shared"]["l3"]) == 9


def test_the_bound_is_on_expanded_nodes(monkeypatch):
    monkeypatch.setattr(overrides, "MAX_ALIAS_NODES", 1000)  # the same rule at a size PyYAML parses in milliseconds
    # the document holds 15 + 11 n nodes (its mapping, two keys, the list of n, ten aliases of it): the largest
    # n that fits, and one more
    n = (1000 - 15) // 11
    for size, fits in ((n, True), (n + 1, False)):
        text = f"a: &a [{', '.join(['x'] * size)}]\nb: [{', '.join(['*a'] * 10)}]\n"
        if fits:
            assert len(yaml.load(text, Loader=UniqueKeyLoader)["b"]) == 10
        else:
            with pytest.raises(yaml.YAMLError, match="aliases expand"):
                yaml.load(text, Loader=UniqueKeyLoader)
    # without aliases a long list is only as big as its file: not refused
    assert len(yaml.load(f"a: [{', '.join(['x'] * 1010)}]", Loader=UniqueKeyLoader)["a"]) == 1010


def test_a_bomb_in_set_stays_text():
    flow = "{" + laughs(9).strip().replace("\n", ", ") + "}"
    parts, value = parse_override(f"loss_args={flow}")
    assert parts == ["loss_args"] and value == flow  # refused as YAML, so kept as its text (then refused as a value)


def test_error_messages_are_bounded():
    long = KagglePlanetError("x: " + "y" * 10**6 + " end")
    text = str(long)
    assert len(text) <= MAX_LINE and text.startswith("x: yyy") and text.endswith(" end")
    assert "characters cut]" in text
    assert str(pickle.loads(pickle.dumps(long))) == text  # as a DataLoader worker sends it back
    short = "models.0.lr: expected a number in (0.0, inf)"
    assert str(KagglePlanetError(short)) == short
    # torch re-raises a worker's error with the traceback in front: the last line, the message, survives whole
    traceback = "Caught KagglePlanetError in DataLoader worker process 0.\nOriginal Traceback:\n" + "  File x, line 1\n" * 5000
    wrapped = str(KagglePlanetError(traceback + "kaggle_planet.core.errors.KagglePlanetError: " + short))
    assert wrapped.splitlines()[-1].endswith(short) and len(wrapped) <= 20000
