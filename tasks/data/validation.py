"""Dataset validation: pandera schemas over the manifest and over facts read from the files.

Every problem is collected (lazy validation) into one table with the columns
``image`` (path, or ``class:<name>`` for class-level checks), ``column``, ``check``, ``value``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from tasks.data.dataset import IMAGE_COLUMN, SPLIT_COLUMN, SPLITS, Dataset
from vehicle_model.images import ImageDecodeError, ImageLimits, decode_image

REPORT_COLUMNS = ["image", "column", "check", "value"]
FILE_COLUMN = "file"
SHA_COLUMN = "sha256"


class DataValidationError(ValueError):
    """The dataset failed validation; nothing downstream may run."""


@dataclass(frozen=True)
class ValidationConfig:
    """What a dataset must satisfy.

    Attributes:
        min_per_class: fewest images any class of any attribute may have.
        labels: optional attribute -> allowed labels; unknown labels are errors.
        limits: byte and pixel limits per image.
    """

    min_per_class: int = 5
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    limits: ImageLimits = ImageLimits()


@dataclass(frozen=True)
class ValidationResult:
    """The checked manifest (with ``sha256`` per readable file) and the problem table."""

    frame: pd.DataFrame
    problems: pd.DataFrame

    @property
    def ok(self) -> bool:
        return self.problems.empty


def inspect_files(
    paths: Sequence[str], limits: ImageLimits, progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """Reads every file once: its sha256 and ``ok`` or what is wrong with it."""

    def inspect(path: str) -> tuple[str, str]:
        if not path:
            return "", "missing: no path given"
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return "", "missing: file not found"
        except OSError as exc:
            return "", f"missing: {exc.strerror or exc}"
        digest = hashlib.sha256(data).hexdigest()
        try:
            decode_image(data, limits)
        except ImageDecodeError as exc:
            return digest, f"{exc.reason}: {exc}"
        return digest, "ok"

    results = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(inspect, paths):
            results.append(result)
            if progress:
                progress(1)
    return pd.DataFrame(results, columns=[SHA_COLUMN, FILE_COLUMN], index=range(len(paths)))


def validate_dataset(
    dataset: Dataset, config: ValidationConfig = ValidationConfig(), progress: Callable[[int], None] | None = None
) -> ValidationResult:
    """Runs every check and returns all problems at once."""
    frame = dataset.frame.reset_index(drop=True)
    facts = pd.concat([frame, inspect_files(list(frame[IMAGE_COLUMN]), config.limits, progress)], axis=1)
    facts["label_conflict"] = _label_conflicts(facts, dataset.attributes)
    if dataset.has_split:
        facts["split_leak"] = _split_leaks(facts)
    row_problems = _failures(row_schema(dataset, config), facts, lambda index: facts.at[index, IMAGE_COLUMN])
    counts = class_counts(facts, dataset.attributes)
    class_problems = _failures(
        class_schema(config.min_per_class), counts, lambda index: f"class:{counts.at[index, 'class']}"
    )
    if not class_problems.empty:
        class_problems["column"] = [counts.at[i, "attribute"] for i in class_problems.pop("_index")]
    problems = pd.concat([row_problems.drop(columns="_index"), class_problems], ignore_index=True)
    return ValidationResult(frame=facts, problems=problems[REPORT_COLUMNS])


def row_schema(dataset: Dataset, config: ValidationConfig) -> pa.DataFrameSchema:
    """Per-image checks: path given, file readable within limits, labels present and known."""
    columns = {
        IMAGE_COLUMN: pa.Column(str, pa.Check(lambda s: s.str.len() > 0, name="path_given")),
        FILE_COLUMN: pa.Column(
            str,
            [
                _status_check("file_exists", "missing"),
                _status_check("decodes", "corrupt", "empty", "unsupported_format"),
                _status_check("within_byte_limit", "too_large"),
                _status_check("within_pixel_limit", "too_many_pixels"),
            ],
        ),
        "label_conflict": pa.Column(str, pa.Check(lambda s: s == "", name="same_content_same_labels")),
    }
    for attribute in dataset.attributes:
        checks = [pa.Check(lambda s: s.str.strip().str.len() > 0, name="label_not_empty")]
        if attribute in config.labels:
            allowed = set(config.labels[attribute])
            checks.append(
                pa.Check(
                    lambda s, allowed=allowed: s.isin(allowed) | (s == ""),
                    name=f"known_label({', '.join(sorted(allowed))})",
                )
            )
        columns[attribute] = pa.Column(str, checks)
    if dataset.has_split:
        # An empty split (a batch without a split column beside batches with one) is assigned.
        columns[SPLIT_COLUMN] = pa.Column(
            str, pa.Check(lambda s: s.isin(SPLITS) | (s == ""), name=f"split_in({', '.join(SPLITS)})")
        )
        columns["split_leak"] = pa.Column(str, pa.Check(lambda s: s == "", name="no_content_in_two_splits"))
    return pa.DataFrameSchema(columns, strict=False)


def class_schema(min_per_class: int) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {"count": pa.Column(int, pa.Check(lambda s: s >= min_per_class, name=f"at_least_{min_per_class}_images"))}
    )


def class_counts(frame: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """One row per (attribute, class) with its image count; empty labels are not a class."""
    rows = [
        {"attribute": attribute, "class": label, "count": int(count)}
        for attribute in attributes
        for label, count in frame[attribute].value_counts().sort_index().items()
        if str(label).strip()
    ]
    return pd.DataFrame(rows, columns=["attribute", "class", "count"])


def _status_check(name: str, *reasons: str) -> pa.Check:
    prefixes = tuple(f"{reason}:" for reason in reasons)
    return pa.Check(lambda s: ~s.str.startswith(prefixes), name=name)


def _label_conflicts(facts: pd.DataFrame, attributes: Sequence[str]) -> list[str]:
    """For each row whose content appears elsewhere with other labels, names that row."""
    return _group_disagreements(facts, list(attributes), "same content labelled")


def _split_leaks(facts: pd.DataFrame) -> list[str]:
    return _group_disagreements(facts, [SPLIT_COLUMN], "same content in")


def _group_disagreements(facts: pd.DataFrame, columns: list[str], message: str) -> list[str]:
    """Rows sharing a sha256 but not the values of ``columns``; each names one other row.

    Rows are numbered as in the manifest (row 1 is the first data row).
    """
    out = [""] * len(facts)
    hashed = facts[facts[SHA_COLUMN] != ""]
    for _, group in hashed.groupby(SHA_COLUMN):
        if len(group) < 2 or len(group[columns].drop_duplicates()) < 2:
            continue
        for index in group.index:
            others = group[(group[columns] != group.loc[index, columns]).any(axis=1)]
            other = others.iloc[0]
            values = ", ".join(f"{c}={other[c]!r}" for c in columns)
            out[index] = f"{message} {values} at row {others.index[0] + 1} ({other[IMAGE_COLUMN]})"
    return out


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame, locate: Callable[[int], str]) -> pd.DataFrame:
    """Validates lazily and turns pandera's failure cases into report rows."""
    columns = REPORT_COLUMNS + ["_index"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        rows = [
            {
                "image": locate(int(case["index"])) if pd.notna(case["index"]) else "",
                "column": case["column"],
                "check": case["check"],
                "value": str(case["failure_case"]),
                "_index": case["index"],
            }
            for _, case in cases.iterrows()
        ]
        return pd.DataFrame(rows, columns=columns)
    return pd.DataFrame(columns=columns)


def problems_markdown(problems: pd.DataFrame, limit: int = 200) -> str:
    """The problem table as Markdown (for the Prefect artifact), truncated to ``limit`` rows."""
    lines = ["| image | column | check | value |", "|---|---|---|---|"]
    for row in problems.head(limit).itertuples(index=False):
        cells = [str(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if len(problems) > limit:
        lines.append(f"\n{len(problems) - limit} more problems not shown.")
    return "\n".join(lines)
