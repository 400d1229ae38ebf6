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
        return line

    def markdown(self) -> str:
        lines = [f"# Training skipped: {self.line}", ""]
        if self.trigger:
            lines.append(f"- started by: {self.trigger}")
        if self.drift_regions:
            lines.append(
                "- drift was seen but there is nothing new to learn from; label regions "
                + ", ".join(self.drift_regions)
                + " and ingest them (`vehicles ingest`)"
            )
        lines.append("- nothing was trained or registered; rerun with `force` to retrain deliberately")
        return "\n".join(lines) + "\n"


def unchanged_since(
    versions: Sequence[tuple[str, str, Mapping[str, str]]], fingerprint: str, featurizer: str
) -> tuple[str, str, Mapping[str, str]] | None:
    """The first ``(alias, version, tags)`` trained on this fingerprint with this featurizer."""
    for alias, version, tags in versions:
        if tags.get(FINGERPRINT_TAG) == fingerprint and tags.get(FEATURIZER_TAG) == featurizer:
            return alias, version, tags
    return None
