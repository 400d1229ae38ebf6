"""``assign_splits`` and ``fingerprint``: reproducible, stable as data grows, leak-free, content-addressed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.dataset import load_dataset
from tasks.data.split import SplitFractions, SplitLedger, assign_splits, fingerprint
from tasks.data.validation import validate_dataset

pytestmark = pytest.mark.unit


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(class_sizes: dict[str, int]) -> pd.DataFrame:
    """One row per image with unique content: image, sha256, label."""
    rows = [
        {"image": f"/data/{label}/{i}.png", "sha256": sha(f"{label}-{i}"), "label": label}
        for label, size in class_sizes.items()
        for i in range(size)
    ]
    return pd.DataFrame(rows)


def by_image(frame: pd.DataFrame, splits: pd.Series) -> dict[str, str]:
    return dict(zip(frame["image"], splits))


def test_same_seed_gives_the_same_assignment_whatever_the_row_order() -> None:
    frame = manifest({"car": 30, "bus": 30, "van": 20})
    shuffled = frame.sample(frac=1, random_state=1).reset_index(drop=True)

    first = assign_splits(frame, ["label"], seed=3)
    again = assign_splits(frame, ["label"], seed=3)
    reordered = assign_splits(shuffled, ["label"], seed=3)

    assert first.tolist() == again.tolist()
    assert by_image(shuffled, reordered) == by_image(frame, first)


def test_another_seed_gives_another_assignment() -> None:
    frame = manifest({"car": 30, "bus": 30})

    assert assign_splits(frame, ["label"], seed=0).tolist() != assign_splits(frame, ["label"], seed=1).tolist()


def test_fractions_are_about_70_15_15() -> None:
    frame = manifest({"car": 50, "bus": 50, "van": 50, "suv": 50})

    counts = assign_splits(frame, ["label"], seed=0).value_counts()

    assert counts.sum() == 200
    for split, expected in {"train": 140, "validation": 30, "test": 30}.items():
        assert abs(counts[split] - expected) <= 6, counts.to_dict()


def test_custom_fractions_are_honoured() -> None:
    frame = manifest({"car": 200, "bus": 200})

    counts = assign_splits(frame, ["label"], fractions=SplitFractions(0.5, 0.25, 0.25)).value_counts()

    for split, expected in {"train": 200, "validation": 100, "test": 100}.items():
        assert abs(counts[split] - expected) <= 25, counts.to_dict()


def test_adding_images_never_moves_an_existing_image_between_splits() -> None:
    """Small classes (where coverage moves happen) grow in three steps; the ledger carries over."""
    known: dict[str, str] = {}
    seen: dict[str, str] = {}
    for sizes in ({"car": 7, "bus": 9}, {"car": 12, "bus": 9, "van": 7}, {"car": 40, "bus": 30, "van": 8}):
        frame = manifest(sizes)
        splits = assign_splits(frame, ["label"], seed=2, known=known)
        now = dict(zip(frame["sha256"], splits))
        assert {sha: now[sha] for sha in seen} == seen, "an image changed split as the data grew"
        assert (pd.crosstab(frame["label"], splits) > 0).all().all(), "every class keeps all three splits"
        known.update(now)
        seen = now


def test_large_classes_are_stable_from_the_hash_alone() -> None:
    small, grown = manifest({"car": 60, "bus": 60}), manifest({"car": 90, "bus": 75, "van": 40})

    before = dict(zip(small["sha256"], assign_splits(small, ["label"], seed=5)))
    after = dict(zip(grown["sha256"], assign_splits(grown, ["label"], seed=5)))

    assert {sha: after[sha] for sha in before} == before


def test_known_assignments_win_over_the_hash() -> None:
    frame = manifest({"car": 20, "bus": 20})
    known = {frame.at[0, "sha256"]: "test", frame.at[1, "sha256"]: "validation"}

    splits = assign_splits(frame, ["label"], seed=0, known=known)

    assert (splits[0], splits[1]) == ("test", "validation")


def test_a_user_split_wins_row_by_row() -> None:
    frame = manifest({"car": 20, "bus": 20})
    frame["split"] = ["test"] * 5 + [""] * 35

    splits = assign_splits(frame, ["label"], seed=0)

    assert splits[:5].tolist() == ["test"] * 5
    assert set(splits[5:]) <= {"train", "validation", "test"} and len(set(splits[5:])) > 1


def test_the_ledger_persists_and_reloads(tmp_path: Path) -> None:
    ledger = SplitLedger(tmp_path, seed=1)
    with ledger.update() as known:
        known.update({"a" * 64: "test", "b" * 64: "train"})

    with SplitLedger(tmp_path, seed=1).update() as again:
        assert again == {"a" * 64: "test", "b" * 64: "train"}
    assert SplitLedger(tmp_path, seed=2).read() == {}


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.8, 0.2, 0.0)])
def test_fractions_must_be_positive_and_sum_to_one(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="positive and sum to 1"):
        SplitFractions(*fractions)


def test_every_class_of_seven_or_more_is_in_every_split() -> None:
    frame = manifest({"car": 7, "bus": 8, "van": 11, "suv": 60})

    for seed in range(5):
        splits = assign_splits(frame, ["label"], seed=seed)
        table = pd.crosstab(frame["label"], splits)
        assert set(table.columns) == {"train", "validation", "test"}
        assert (table > 0).all().all(), f"seed {seed}:\n{table}"


def test_rare_label_combinations_fall_back_to_the_first_attribute() -> None:
    frame = manifest({"car": 14, "bus": 14})
    frame["color"] = ["red", "blue"] * 14  # 7 per (type, colour): enough to stratify by both
    frame.loc[0, "color"] = "green"  # one combination of 1: only the type can be stratified

    splits = assign_splits(frame, ["label", "color"], seed=0)

    assert (pd.crosstab(frame["label"], splits) > 0).all().all()


def test_identical_content_lands_in_one_split() -> None:
    frame = manifest({"car": 40, "bus": 40})
    copies = frame.iloc[::4].assign(image=lambda f: f["image"].str.replace(".png", "-copy.png"))
    frame = pd.concat([frame, copies, copies.assign(image=lambda f: f["image"] + ".2")], ignore_index=True)

    for seed in range(5):
        splits = assign_splits(frame, ["label"], seed=seed)
        assert (splits.groupby(frame["sha256"]).nunique() == 1).all()


def test_an_existing_split_column_wins() -> None:
    frame = manifest({"car": 10, "bus": 10})
    frame["split"] = ["test"] * 20

    splits = assign_splits(frame, ["label"], seed=0)

    assert splits.tolist() == ["test"] * 20


def test_synthetic_dataset_split_covers_every_vehicle_type(tiny_dataset: Path) -> None:
    dataset = load_dataset(tiny_dataset)
    frame = validate_dataset(dataset).frame

    splits = assign_splits(frame, dataset.attributes, seed=0)

    assert splits.notna().all()
    assert (pd.crosstab(frame["vehicle_type"], splits) > 0).all().all()


def labelled() -> pd.DataFrame:
    frame = manifest({"car": 5, "bus": 5})
    frame["color"] = ["red", "blue"] * 5
    return frame


def test_fingerprint_ignores_row_order_and_file_names() -> None:
    frame = labelled()
    moved = frame.sample(frac=1, random_state=0).assign(image=lambda f: "/elsewhere/" + f["sha256"] + ".jpg")

    assert fingerprint(moved, ["label", "color"]) == fingerprint(frame, ["label", "color"])


def test_fingerprint_changes_with_a_label() -> None:
    frame = labelled()
    relabelled = frame.copy()
    relabelled.loc[3, "color"] = "green"

    assert fingerprint(relabelled, ["label", "color"]) != fingerprint(frame, ["label", "color"])


def test_fingerprint_changes_with_content() -> None:
    frame = labelled()
    edited = frame.copy()
    edited.loc[3, "sha256"] = sha("edited pixels")

    assert fingerprint(edited, ["label", "color"]) != fingerprint(frame, ["label", "color"])


def test_fingerprint_depends_on_which_attributes_are_used() -> None:
    frame = labelled()

    assert fingerprint(frame, ["label"]) != fingerprint(frame, ["label", "color"])
