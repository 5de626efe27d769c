"""What the TUI knows of the control plane's runs, kept current from the live feed: the runs and each one's recent
training loss for its sparkline, and which runs the feed brings in full. The app owns them; screens read them. No
textual here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .metric_names import TRAIN_LOSS_NAMES

if TYPE_CHECKING:  # the models load once the control plane answers, after the first frame
    from .feed import FeedEntry, MetricsAdded
    from .models import Run

SPARK_POINTS = 40


class LiveRuns:
    """Runs by id and their sparklines; `apply` takes each feed entry. `version` grows with every change the runs
    table shows, so a view redraws only when it moved."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.sparks: dict[str, list[float]] = {}
        self._spark_names: dict[str, str] = {}
        self.version = 0

    def get(self, run_id: str | None) -> Run | None:
        return self.runs.get(run_id or "")

    def name_of(self, run_id: str) -> str:
        run = self.runs.get(run_id)
        return run.name if run is not None else run_id

    def newest_first(self) -> list[Run]:
        return sorted(self.runs.values(), key=lambda r: r.created_at, reverse=True)

    def live(self) -> list[Run]:
        """Runs whose pods may still bill."""
        return [r for r in self.runs.values() if r.status.is_live]

    def put(self, run: Run) -> bool:
        """A run as it is now (from the feed or an API answer); True when it is new."""
        new = run.id not in self.runs
        self.runs[run.id] = run
        self.version += 1
        return new

    def load(self, runs: Iterable[Run]) -> None:
        """The list fetched at start: a run the feed already brought is newer and stays."""
        for run in runs:
            self.runs.setdefault(run.id, run)
        self.version += 1

    def set_spark(self, run_id: str, name: str, values: list[float]) -> None:
        """A run's recent training loss, fetched."""
        self._spark_names[run_id] = name
        self.sparks[run_id] = values[-SPARK_POINTS:]
        self.version += 1

    def apply(self, entry: FeedEntry) -> None:
        """Take one feed entry."""
        from .feed import MetricsAdded, RunChanged

        if isinstance(entry, RunChanged):
            self.put(entry.run)
        elif isinstance(entry, MetricsAdded):
            self._add_points(entry)

    def _add_points(self, entry: MetricsAdded) -> None:
        run_id = entry.run_id
        name = self._spark_names.get(run_id)
        if name is None or name != TRAIN_LOSS_NAMES[0]:  # "loss" wins over "train_loss" once it shows up
            seen = {p.name for p in entry.points if p.name in TRAIN_LOSS_NAMES}
            better = next((n for n in TRAIN_LOSS_NAMES if n in seen), None)
            if better is not None and (name is None or TRAIN_LOSS_NAMES.index(better) < TRAIN_LOSS_NAMES.index(name)):
                name = self._spark_names[run_id] = better
                self.sparks[run_id] = []
        if name is None:
            return
        spark = self.sparks.setdefault(run_id, [])
        spark.extend(float(p.value) for p in entry.points if p.name == name)
        del spark[:-SPARK_POINTS]
        self.version += 1


class Follow:
    """The runs a feed subscription follows in full; the others come as summaries (run changes and events).

    `set` changes them; `Client.events` reconnects at once with the new subscription from the last entry it
    yielded. Set it before fetching a newly followed run's history: what that fetch misses comes on the feed."""

    def __init__(self, runs: Iterable[str] = ()) -> None:
        self.runs = frozenset(runs)
        self._changed: asyncio.Event | None = None

    def set(self, runs: Iterable[str | None]) -> None:
        """Follow these runs in full from now."""
        wanted = frozenset(r for r in runs if r)
        if wanted != self.runs:
            self.runs = wanted
            if self._changed is not None:
                self._changed.set()

    def renewed(self) -> asyncio.Event:
        """An event set at the next change (one per connection of the stream)."""
        self._changed = asyncio.Event()
        return self._changed
