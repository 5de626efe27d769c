"""What the TUI knows of the control plane's runs, kept current from the live feed: the runs and each one's recent
training loss for its sparkline, and which runs the feed brings in full. The app owns them; screens read them. No
textual here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .stored_runs import StoredRun

if TYPE_CHECKING:  # the models load once the control plane answers, after the first frame
    from .feed import FeedEntry
    from .models import Run

SPARK_POINTS = 40


class LiveRuns:
    """Runs by id and their sparklines; `apply` takes each feed entry. `version` grows with every change the runs
    table shows, so a view redraws only when it moved.

    A sparkline is a run's recent training loss: fetched once, then grown from the run's own changes (its
    `last_loss` at each new step), which the feed brings for every run, followed in full or not."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.stored: dict[str, StoredRun] = {}
        """The runs read straight from the store at start, shown until the control plane's list replaces them."""
        self.sparks: dict[str, list[float]] = {}
        self.version = 0
        self._current: set[str] = set()
        """Runs put one by one (from the feed or an API answer): newer than any list loaded since."""

    def get(self, run_id: str | None) -> Run | None:
        return self.runs.get(run_id or "")

    def name_of(self, run_id: str) -> str:
        run = self.runs.get(run_id) or self.stored.get(run_id)
        return run.name if run is not None else run_id

    def shown(self) -> list[Run | StoredRun]:
        """The runs, and those read from the store that the control plane has not told of yet."""
        return [*self.runs.values(), *(r for r in self.stored.values() if r.id not in self.runs)]

    def newest_first(self) -> list[Run | StoredRun]:
        return sorted(self.shown(), key=lambda r: r.created_at, reverse=True)

    def live(self) -> list[Run | StoredRun]:
        """Runs still going (their uptime and cost grow)."""
        return [r for r in self.shown() if r.status.is_live]

    def pods_in_use(self) -> list[Run | StoredRun]:
        """Runs whose pods may still bill: live ones, and ended ones whose pod stays to bring the outputs home
        (quitting the TUI then would stop the control plane they come home to, and the pod would wait out its
        keep-alive)."""
        now = time.time()
        return [r for r in self.shown() if r.pod_in_use(now)]

    def load_stored(self, runs: Iterable[StoredRun]) -> None:
        """The runs as the store held them at start (before the control plane answers)."""
        self.stored = {r.id: r for r in runs}
        self.version += 1

    def put(self, run: Run) -> bool:
        """A run as it is now (from the feed or an API answer); True when it is new."""
        old = self.runs.get(run.id)
        self.runs[run.id] = run
        self._current.add(run.id)
        stepped = run.last_step is not None and (old is None or old.last_step is None or run.last_step > old.last_step)
        if stepped and run.last_loss is not None:
            spark = self.sparks.setdefault(run.id, [])
            spark.append(run.last_loss)
            del spark[:-SPARK_POINTS]
        self.version += 1
        return old is None

    def load(self, runs: Iterable[Run]) -> None:
        """A list of the runs (from the store at start, then from the control plane): it replaces an earlier
        list's copy of a run, but not one the feed brought since, which is newer."""
        for run in runs:
            if run.id not in self._current:
                self.runs[run.id] = run
        self.stored.clear()  # the control plane's list is whole
        self.version += 1

    def set_spark(self, run_id: str, values: list[float]) -> None:
        """A run's recent training loss, fetched."""
        self.sparks[run_id] = values[-SPARK_POINTS:]
        self.version += 1

    def apply(self, entry: FeedEntry) -> None:
        """Take one feed entry (the runs table shows run changes only)."""
        from .feed import RunChanged

        if isinstance(entry, RunChanged):
            self.put(entry.run)


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
