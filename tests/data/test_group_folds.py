"""Group folds: no group in two folds for every task kind, balance with many small groups, determinism,
refusals (k against the groups, a class in too few groups, a fold file that splits a group), the summary,
and the hint for tables that look grouped without a group column."""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import DatasetTable
from kaggle_planet.data.folds import fold_summary, make_folds, read_folds, suspected_groups, write_folds

TASKS = ("binary", "multiclass", "multilabel")


def make_table(task: str, groups, targets: np.ndarray, ids=None, extra: dict | None = None, group_col: str | None = "patient") -> DatasetTable:
    """A training table built by hand: ``targets: (N, C) 0/1`` (binary: (N, 1); multiclass: one-hot)."""
    n = len(targets)
    classes = [f"c{i}" for i in range(targets.shape[1])]
    ids = [f"img{i:05d}" for i in range(n)] if ids is None else list(ids)
    columns = {"id": ids, "file": [f"/x/{i}.png" for i in ids]}
    if groups is not None:
        columns["patient"] = [str(g) for g in groups]
    columns.update(extra or {})
    train = pd.DataFrame({**columns, **{c: targets[:, j] for j, c in enumerate(classes)}})
    return DatasetTable("grouped", task, "id", classes, Path("."), train, train.iloc[:0], group_col=group_col if groups is not None else None)


def random_targets(task: str, n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    if task == "binary":
        return (rng.random((n, 1)) < rng.uniform(0.2, 0.6)).astype(np.int64)
    if task == "multiclass":
        return np.eye(n_classes, dtype=np.int64)[rng.choice(n_classes, n, p=rng.dirichlet(np.full(n_classes, 3.0)))]
    return (rng.random((n, n_classes)) < rng.uniform(0.15, 0.6, n_classes)).astype(np.int64)


def random_table(task: str, n_groups: int, max_size: int, seed: int, n_classes: int = 4) -> DatasetTable:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_groups)
    groups = rng.permutation(np.repeat([f"p{g}" for g in range(n_groups)], sizes))  # a group's images scattered in the file
    return make_table(task, groups, random_targets(task, len(groups), n_classes, rng))


def both_values(table: DatasetTable) -> pd.DataFrame:
    """Each class a fold needs as a 0/1 column (binary: positives and negatives), counted from the frame."""
    frame = table.train[table.classes].copy()
    if table.task == "binary":
        frame["negative"] = 1 - frame[table.classes[0]]
    frame["images"] = 1
    return frame


def assert_no_group_in_two_folds(table: DatasetTable, folds: np.ndarray) -> None:
    folds_per_group = pd.DataFrame({"group": table.train["patient"], "fold": folds}).groupby("group")["fold"].nunique()
    assert folds_per_group.max() == 1, folds_per_group[folds_per_group > 1].head()


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    task=st.sampled_from(TASKS),
    n_groups=st.integers(6, 60),
    max_size=st.integers(1, 12),
    k=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_group_is_in_two_folds(task, n_groups, max_size, k, seed):
    table = random_table(task, n_groups, max_size, seed % 10_000)
    try:
        folds = make_folds(table, k, seed)["fold"].to_numpy()
    except KagglePlanetError as exc:  # random labels can leave a class in fewer than k groups: then rightly refused
        groups_per_class = both_values(table).drop(columns="images").groupby(table.train["patient"]).max().sum(axis=0)
        assert groups_per_class.min() < k and "rarest class allows" in str(exc) and "\n" not in str(exc)
        return
    assert_no_group_in_two_folds(table, folds)
    assert sorted(set(folds)) == list(range(k))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_small_groups_are_balanced_within_one_image(task, seed):
    k = 5
    table = random_table(task, n_groups=1500, max_size=4, seed=seed, n_classes=6)
    folds = make_folds(table, k, seed)["fold"].to_numpy()
    assert_no_group_in_two_folds(table, folds)
    counts = both_values(table).groupby(folds).sum()  # independent of the function's own counting
    ideal = counts.sum(axis=0) / k
    assert (counts.sub(ideal, axis=1).abs() <= 1.0).all().all(), counts.sub(ideal, axis=1)
    assert (counts > 0).all().all()


@pytest.mark.parametrize("task", TASKS)
def test_large_groups_stay_whole_and_are_only_warned_about(task, caplog):
    table = random_table(task, n_groups=12, max_size=40, seed=5, n_classes=3)
    with caplog.at_level(logging.WARNING, logger="kaggle_planet.data.folds"):
        folds = make_folds(table, 3, 0)["fold"].to_numpy()
    assert_no_group_in_two_folds(table, folds)
    assert sorted(set(folds)) == [0, 1, 2]
    assert all("\n" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("task", TASKS)
def test_same_inputs_give_a_byte_identical_file(task, tmp_path):
    table = random_table(task, n_groups=200, max_size=6, seed=11)
    digests = []
    for run in range(2):
        path = write_folds(make_folds(table, 4, 42), tmp_path / f"run{run}" / "f.csv")
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert not np.array_equal(make_folds(table, 4, 43)["fold"].to_numpy(), make_folds(table, 4, 42)["fold"].to_numpy())


def test_the_group_column_changes_the_folds_and_without_one_nothing_changes():
    table = random_table("multilabel", n_groups=100, max_size=6, seed=3)
    plain = DatasetTable(table.competition, table.task, table.id_col, table.classes, table.data_dir, table.train, table.test)
    grouped_folds = make_folds(table, 3, 0)["fold"].to_numpy()
    plain_folds = make_folds(plain, 3, 0)["fold"].to_numpy()
    assert not np.array_equal(grouped_folds, plain_folds)
    per_group = pd.DataFrame({"g": table.train["patient"], "f": plain_folds}).groupby("g")["f"].nunique()
    assert per_group.max() > 1  # the check below is not vacuous: plain folds split groups


@pytest.mark.parametrize("task", TASKS)
def test_refuses_k_larger_than_the_number_of_groups(task):
    labels = np.arange(60) % 3  # every group holds every class
    targets = (labels[:, None] == 0).astype(np.int64) if task == "binary" else np.eye(3, dtype=np.int64)[labels]
    table = make_table(task, np.repeat(["a", "b", "c"], 20), targets)
    with pytest.raises(KagglePlanetError, match=r"^folds: k=4 is larger than the number of groups allows: column 'patient' has 3 group\(s\); expected k <= 3"):
        make_folds(table, 4, 0)
    make_folds(table, 3, 0)


def test_refuses_a_class_in_fewer_than_k_groups():
    groups = np.repeat([f"p{g}" for g in range(10)], 10)
    targets = np.zeros((100, 3), dtype=np.int64)
    targets[:, 0] = 1
    targets[::2, 1] = 1
    targets[groups == "p3", 2] = 1  # 20 images of c2, but in two groups only
    targets[groups == "p7", 2] = 1
    table = make_table("multilabel", groups, targets)
    with pytest.raises(KagglePlanetError, match=r"^folds: k=3 is larger than the rarest class allows: 'c2' is in 2 group\(s\) of column 'patient'; expected k <= 2 \(") as exc:
        make_folds(table, 3, 0)
    assert "\n" not in str(exc.value)
    folds = make_folds(table, 2, 0)["fold"].to_numpy()
    assert set(folds[targets[:, 2] == 1]) == {0, 1}


def test_refuses_a_binary_value_in_fewer_than_k_groups():
    groups = np.repeat([f"p{g}" for g in range(8)], 5)
    targets = (np.isin(groups, ["p0", "p1"])).astype(np.int64)[:, None]  # 10 positives from 2 patients
    table = make_table("binary", groups, targets)
    with pytest.raises(KagglePlanetError, match=r"'c0=1' is in 2 group\(s\) of column 'patient'; expected k <= 2"):
        make_folds(table, 3, 0)


def rare_class_table(task: str, seed: int, k: int) -> tuple[DatasetTable, np.ndarray]:
    """25 patients of 1-8 images; a rare class in exactly k of them (the least _check_k lets through)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, 25)
    groups = np.repeat(np.arange(25), sizes)
    rare_groups = rng.choice(25, k, replace=False)
    rare = np.isin(groups, rare_groups) & (rng.random(len(groups)) < 0.5)
    rare[[np.flatnonzero(groups == g)[0] for g in rare_groups]] = True
    if task == "binary":
        targets = rare[:, None].astype(np.int64)
    elif task == "multiclass":
        targets = np.eye(3, dtype=np.int64)[np.where(rare, 2, rng.integers(0, 2, len(groups)))]
    else:
        targets = np.stack([rng.random(len(groups)) < 0.5, rng.random(len(groups)) < 0.3, rare], axis=1).astype(np.int64)
    return make_table(task, [f"p{g:02d}" for g in groups], targets), rare


@pytest.mark.parametrize("task", TASKS)
def test_every_fold_gets_a_class_that_is_in_exactly_k_groups(task):
    seeds = range(40) if task == "multilabel" else range(8)  # multi-label: 1, 8, 17, 25 and 38 needed the repair
    for seed in seeds:
        for k in (3, 5):
            table, rare = rare_class_table(task, seed, k)
            folds = make_folds(table, k, seed)["fold"].to_numpy()
            assert_no_group_in_two_folds(table, folds)
            assert sorted(set(folds[rare])) == list(range(k)), (seed, k)


def test_every_fold_gets_every_class_on_small_random_tables():
    """300 small tables (3-39 patients of 1-7 images, k 2-5): where _check_k lets them through, every fold
    holds every class (binary: both values). A sweep of 3,000 such tables missed only in two, which no
    assignment can satisfy (checked by enumerating every one)."""
    refused = 0
    for trial in range(300):
        rng = np.random.default_rng(trial)
        task = TASKS[trial % 3]
        n_groups, k = int(rng.integers(3, 40)), int(rng.integers(2, 6))
        groups = np.repeat([f"g{g}" for g in range(n_groups)], rng.integers(1, 8, n_groups))
        table = make_table(task, groups, random_targets(task, len(groups), 4, rng))
        try:
            folds = make_folds(table, k, trial)["fold"].to_numpy()
        except KagglePlanetError:
            refused += 1
            continue
        assert (both_values(table).groupby(folds).sum() > 0).all().all(), trial
    assert refused < 60


def test_read_folds_refuses_a_file_that_splits_a_group(tmp_path):
    table = random_table("multiclass", n_groups=30, max_size=5, seed=2)
    plain = DatasetTable(table.competition, table.task, table.id_col, table.classes, table.data_dir, table.train, table.test)
    path = write_folds(make_folds(plain, 3, 0), tmp_path / "grouped_k3_s0.csv")  # made before the group column was set
    folds = pd.read_csv(path)["fold"].to_numpy()
    first = pd.Series(folds).groupby(table.train["patient"].to_numpy(), sort=False).transform("first").to_numpy()
    row = int(np.flatnonzero(first != folds)[0])
    group = table.train["patient"].iloc[row]
    with pytest.raises(KagglePlanetError) as exc:
        read_folds(path, table, 3)
    message = str(exc.value)
    assert message == (
        f"{path}: group {group!r} of column 'patient' is in folds {first[row]} and {folds[row]}; a group must stay in one fold "
        "(the file predates the group column, or was edited): delete it to make new folds"
    )
    np.testing.assert_array_equal(read_folds(path, plain, 3), folds)  # the same file is fine without groups
    good = write_folds(make_folds(table, 3, 0), tmp_path / "good.csv")
    np.testing.assert_array_equal(read_folds(good, table, 3), make_folds(table, 3, 0)["fold"].to_numpy())


def test_read_folds_refuses_a_hand_edited_file(tmp_path):
    table = random_table("binary", n_groups=30, max_size=5, seed=4)
    frame = make_folds(table, 3, 0)
    row = int(np.flatnonzero(table.train["patient"].duplicated(keep=False).to_numpy())[0])
    frame.loc[row, "fold"] = (frame.loc[row, "fold"] + 1) % 3
    path = write_folds(frame, tmp_path / "edited.csv")
    with pytest.raises(KagglePlanetError, match=rf"group {table.train['patient'].iloc[row]!r} of column 'patient' is in folds \d and \d; .*delete it"):
        read_folds(path, table, 3)


def test_fold_summary_counts_groups_per_fold():
    table = random_table("multilabel", n_groups=50, max_size=5, seed=8)
    folds = make_folds(table, 3, 0)["fold"].to_numpy()
    lines = fold_summary(table, folds).splitlines()
    assert lines[1].split()[0] == "images" and lines[2].split()[0] == "groups"
    expected = [table.train["patient"][folds == f].nunique() for f in range(3)]
    assert [int(v) for v in lines[2].split()[1:]] == expected
    assert sum(expected) == 50
    plain = DatasetTable(table.competition, table.task, table.id_col, table.classes, table.data_dir, table.train, table.test)
    assert "groups" not in fold_summary(plain, folds)


# --------------------------------------------------------------------------- suspected_groups


def plain_table(ids, task="binary", targets=None, extra=None, classes=None) -> DatasetTable:
    rng = np.random.default_rng(0)
    targets = random_targets(task, len(ids), 3, rng) if targets is None else targets
    table = make_table(task, None, targets, ids=ids, extra=extra)
    if classes is not None:
        table.train = table.train.rename(columns=dict(zip(table.classes, classes)))
        table.classes = list(classes)
    return table


def test_a_patient_column_in_the_raw_labels_is_suspected():
    n = 3000
    patients = np.repeat([f"IP_{p:07d}" for p in range(200)], 15)
    frame = pd.DataFrame({"id": [f"ISIC_{i:07d}" for i in range(n)], "patient_id": patients, "sex": "male",
                          "anatom_site_general_challenge": np.resize(["torso", "head/neck", "", "upper extremity"], n)})
    table = plain_table(frame["id"])
    assert suspected_groups(table, frame) == (
        "ids look grouped: column 'patient_id' has 200 values for 3,000 images; "
        "set layout.group_column: patient_id so that folds never split a group"
    )
    # the anatomical site also matches a group word ("site"), but the patient word ranks first
    assert "anatom_site" in suspected_groups(table, frame.drop(columns="patient_id"))
    assert suspected_groups(table) is None  # ISIC_ ids: one prefix for every id, not a grouping


def test_a_group_column_kept_in_the_table_is_suspected():
    ids = [f"{i}" for i in range(400)]
    table = plain_table(ids, extra={"Subject": np.repeat([f"s{i}" for i in range(40)], 10)})
    assert suspected_groups(table) == (
        "ids look grouped: column 'Subject' has 40 values for 400 images; set layout.group_column: Subject so that folds never split a group"
    )


def test_a_table_with_a_group_column_is_not_suspected():
    table = random_table("binary", n_groups=30, max_size=5, seed=1)
    assert suspected_groups(table) is None


@pytest.mark.parametrize(
    "name,values",
    [
        ("patient_id", [f"p{i}" for i in range(400)]),  # every value unique: not a grouping
        ("patient_id", ["same"] * 400),  # one value for all
        ("site", [""] * 300 + [f"s{i % 5}" for i in range(100)]),  # mostly empty
        ("age_approx", [str(i % 9) for i in range(400)]),  # repeats, but not a group name
    ],
)
def test_columns_that_are_not_groups_are_not_suspected(name, values):
    frame = pd.DataFrame({"id": [str(i) for i in range(400)], name: values})
    assert suspected_groups(plain_table(frame["id"]), frame) is None


def test_plain_numeric_ids_are_not_suspected():
    assert suspected_groups(plain_table([str(i) for i in range(5000)])) is None
    assert suspected_groups(plain_table([f"train_{i}" for i in range(5000)])) is None  # one prefix, Planet style
    assert suspected_groups(plain_table([f"{i:08x}-{i * 7 % 9973:04x}" for i in range(5000)])) is None  # unique prefixes


def test_ids_sharing_a_prefix_are_suspected():
    ids = [f"P{p:03d}_{v}.png" for p in range(250) for v in range(4)]
    hint = suspected_groups(plain_table(ids))
    assert hint == (
        "ids look grouped: 1,000 of 1,000 ids share 250 prefixes before '_' (e.g. 'P000': 4 images); if a prefix names a group "
        "(a patient, a user), add a column naming it and set layout.group_column so that folds never split a group"
    )
    # Diabetic Retinopathy style: both eyes of a patient, 10_left and 10_right
    assert "share 500 prefixes before '_'" in suspected_groups(plain_table([f"{p}_{eye}" for p in range(500) for eye in ("left", "right")]))


def test_ids_prefixed_by_their_label_are_not_suspected():
    """Dogs vs Cats: ``cat.0``, ``dog.1``. Two prefixes for thousands of ids name the class, not a group:
    no hint when the prefixes are class names, nor when there are no more prefixes than label values and
    each prefix holds one label (a binary "dog" class, where "cat" is its 0 value)."""
    n = 4000
    labels = np.arange(n) % 2
    ids = [f"{'dog' if y else 'cat'}.{i}" for i, y in enumerate(labels)]
    multiclass = np.eye(2, dtype=np.int64)[labels]
    assert suspected_groups(plain_table(ids, "multiclass", multiclass, classes=["cat", "dog"])) is None
    assert suspected_groups(plain_table(ids, "binary", labels[:, None], classes=["dog"])) is None
    # the same two prefixes with both labels inside each: two sources, worth a hint
    mixed = [f"{'siteA' if i % 3 else 'siteB'}-{i}" for i in range(n)]
    assert "share 2 prefixes before '-'" in suspected_groups(plain_table(mixed, "binary", labels[:, None], classes=["dog"]))


def test_suspected_groups_is_cheap_for_100k_ids():
    n = 100_000
    ids = [f"P{i // 7:05d}_{i % 7}" for i in range(n)]
    frame = pd.DataFrame({"id": ids, "study_id": [f"s{i // 3}" for i in range(n)], "region": "x"})
    table = plain_table(ids)
    start = time.perf_counter()
    assert "column 'study_id'" in suspected_groups(table, frame)
    assert "ids look grouped: 100,000 of 100,000 ids" in suspected_groups(table)
    assert time.perf_counter() - start < 5.0
