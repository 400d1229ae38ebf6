"""Whether a training run can teach anything new, and how a skipped run explains itself.

A run whose snapshot (fingerprint) and featurizer match a version the gate has already
judged (the champion, or the challenger it rejected) would train the same model again:
it trains and registers nothing. Other flows (a drift-triggered retrain) reuse the
message and add why they were started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tasks.registry.aliases import CHAMPION
from vehicle_model.metadata import FEATURIZER_TAG, FINGERPRINT_TAG


@dataclass(frozen=True)
class SkippedRun:
    """A run that trained nothing, and why.

    Attributes:
        version: the registered version trained on this very snapshot.
        alias: its alias (``champion_alias`` or ``challenger``).
        champion_version: the champion at the time.
        dataset: where that version's data came from.
        fingerprint: the unchanged snapshot fingerprint.
        images: how many images it holds.
        promotion_reason: why a challenger was not promoted (empty for the champion).
        trigger: what started the run (e.g. ``schedule``, ``drift``), when given.
        drift_regions: regions where drift was seen, when a drift check started the run.
        champion_alias: the alias serving follows (``MODEL_ALIAS``).
        waiting: region -> kept images waiting for review (``LabelStore.counts``).
        harvestable: region -> reviewed labels not yet in the training data.
    """

    version: str
    alias: str
    champion_version: str | None
    dataset: str
    fingerprint: str
    images: str
    promotion_reason: str = ""
    trigger: str | None = None
    drift_regions: tuple[str, ...] = field(default_factory=tuple)
    champion_alias: str = CHAMPION
    waiting: Mapping[str, int] = field(default_factory=dict)
    harvestable: Mapping[str, int] = field(default_factory=dict)

    @property
    def line(self) -> str:
        """One line for the CLI and the artifact title."""
        since = f"{self.alias} v{self.version}"
        line = (
            f"no new data since {since}, trained on {self.dataset} "
            f"({self.images} images, fingerprint {self.fingerprint[:12]})"
        )
        if self.alias != self.champion_alias:
            champion = f"v{self.champion_version}" if self.champion_version else "none"
            line += f"; it was not promoted ({self.promotion_reason}); champion is {champion}"
        if self.waiting:
            line += f"; {in_regions(self.waiting, 'images')} waiting for review"
        if self.harvestable:
            line += f"; {in_regions(self.harvestable, 'reviewed labels')} not harvested yet"
        return line

    def markdown(self) -> str:
        lines = [f"# Training skipped: {self.line}", ""]
        if self.trigger:
            lines.append(f"- started by: {self.trigger}")
        todo = []
        if self.waiting:
            verb = "is" if sum(self.waiting.values()) == 1 else "are"
            todo.append(f"{in_regions(self.waiting, 'images')} {verb} waiting for review at /label")
            todo[-1] += " (or `vehicles labels export`)"
        if self.harvestable:
            todo.append(f"{in_regions(self.harvestable, 'reviewed labels')} can be added now")
            todo[-1] += ": `vehicles labels harvest` (the daily `harvest-labels` run does it)"
        if self.drift_regions:
            if not todo:
                todo.append(f"label regions {', '.join(self.drift_regions)} and ingest them (`vehicles ingest`)")
            todo[0] = f"drift was seen but there is nothing new to learn from; {todo[0]}"
        lines += [f"- {line}" for line in todo]
        lines.append("- nothing was trained or registered; rerun with `force` to retrain deliberately")
        return "\n".join(lines) + "\n"


def in_regions(counts: Mapping[str, int], noun: str) -> str:
    """``37 images from night``, or ``42 images: 37 from night, 5 from day`` (largest first);
    ``noun`` is plural, and loses its last letter for a count of one."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    noun = noun[:-1] if sum(counts.values()) == 1 else noun
    if len(ordered) == 1:
        [(region, n)] = ordered
        return f"{n} {noun} from {region}"
    return f"{sum(counts.values())} {noun}: " + ", ".join(f"{n} from {region}" for region, n in ordered)


def unchanged_since(
    versions: Sequence[tuple[str, str, Mapping[str, str]]], fingerprint: str, featurizer: str
) -> tuple[str, str, Mapping[str, str]] | None:
    """The first ``(alias, version, tags)`` trained on this fingerprint with this featurizer."""
    for alias, version, tags in versions:
        if tags.get(FINGERPRINT_TAG) == fingerprint and tags.get(FEATURIZER_TAG) == featurizer:
            return alias, version, tags
    return None
