"""A harvest of reviewed labels into the training data root, in numbers and in words.

The labels themselves are written as a batch folder by ``feedback.harvest`` and added by
``tasks.data.ingest``; this module says which attributes the batch must label to fit the
root, names the labelled items behind any problem ingest finds, and reports what went in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from feedback.items import HarvestRow
from tasks.data.dataset import is_batch_root, load_dataset
from tasks.data.validation import problems_markdown


@dataclass(frozen=True)
class Harvest:
    """One harvest run.

    Attributes:
        root: the training data root the labels went into (empty when none was needed).
        batch: the batch folder's name under the root; None when nothing was added.
        regions: region -> labels added.
        images: distinct images added (two requests may have sent the same image).
        skipped: item_id -> why it was left out (it stays harvestable).
        expired_images: kept images the retention window deleted at the start of the run.
        note: why nothing was added, when nothing was.
    """

    root: str
    batch: str | None = None
    regions: dict[str, int] = field(default_factory=dict)
    images: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    expired_images: int = 0
    note: str = ""

    @property
    def labels(self) -> int:
        return sum(self.regions.values())


def root_attributes(root: Path) -> list[str] | None:
    """The label columns of the root's batches; None when the root holds no batch yet (or is
    not a root of batches, which ingest then refuses with its own message)."""
    if not root.is_dir() or not is_batch_root(root):
        return None
    return load_dataset(root).attributes


def per_region(rows: Iterable[HarvestRow], item_ids: Iterable[str]) -> dict[str, int]:
    """Region -> how many of ``item_ids`` it holds, largest first."""
    chosen = set(item_ids)
    counts = Counter(row.region for row in rows if row.item_id in chosen)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def name_items(problems: pd.DataFrame, rows: Iterable[HarvestRow]) -> pd.DataFrame:
    """The problem table with each image of the harvested batch named by the labelled items
    behind it (the batch folder is temporary; the item ids are what a reviewer can fix)."""
    by_sha: dict[str, list[str]] = {}
    for row in rows:
        by_sha.setdefault(row.image_sha, []).append(row.item_id)

    def name(image: str) -> str:
        items = by_sha.get(Path(image).stem)
        return f"items {', '.join(items)} (image {Path(image).stem[:12]})" if items else image

    return problems.assign(image=[name(str(image)) for image in problems["image"]])


def harvest_markdown(harvest: Harvest, problems: pd.DataFrame | None = None) -> str:
    """What went into the training data, per region, and what was left out and why; with the
    problems ingest found when it refused the batch."""
    if harvest.batch is None:
        lines = [f"# No labels harvested: {harvest.note}", ""]
        if problems is not None and not problems.empty:
            lines += [problems_markdown(problems), ""]
    else:
        lines = [
            f"# Harvested {harvest.labels} labels ({harvest.images} images) as `{harvest.batch}`",
            "",
            f"Added to {harvest.root}; the next retrain learns from them.",
            "",
            "| region | labels |",
            "|---|---:|",
            *(f"| {region} | {n} |" for region, n in harvest.regions.items()),
            "",
        ]
    if harvest.skipped:
        lines += [f"{len(harvest.skipped)} labels left out (they stay harvestable):", ""]
        lines += [f"- `{item_id}`: {why}" for item_id, why in list(harvest.skipped.items())[:50]]
        lines.append("")
    lines.append(f"Retention deleted {harvest.expired_images} expired images first.")
    return "\n".join(lines) + "\n"


def ready_regions(rows: Iterable[HarvestRow], min_labels: int) -> dict[str, int]:
    """Regions holding at least ``min_labels`` labels not harvested yet -> how many."""
    counts: Mapping[str, int] = Counter(row.region for row in rows)
    return {region: n for region, n in sorted(counts.items()) if n >= min_labels}
