"""The TUI's messages: the live feed's entries as Textual messages (the app applies each entry to its `LiveRuns`
first, then posts the message to the screens on its stack, so a handler reads state that already includes it), and
what screens ask of the app (they do not import it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pydantic and the models load once the control plane answers, after the first frame
    from .feed import FeedEntry
    from .models import LogLine, MetricPoint, Run, RunEvent


class FeedMessage(Message, bubble=False):
    """One live feed entry (screens handle it; it does not bubble to the app, which posted it)."""


@dataclass
class RunUpdated(FeedMessage):
    """A run's row changed (status, step, cost, GPU use, ...)."""

    run: Run


@dataclass
class RunEventArrived(FeedMessage):
    """Something happened to a run."""

    event: RunEvent


@dataclass
class MetricsArrived(FeedMessage):
    """New metric points of a run."""

    run_id: str
    points: list[MetricPoint]


@dataclass
class LogsArrived(FeedMessage):
    """New log lines of a run."""

    run_id: str
    lines: list[LogLine]


@dataclass
class EndPodAsked(Message):
    """A screen asks the app to terminate (or stop) a run's pod; the app asks the user first unless told not to."""

    run_id: str
    stopping: bool = False
    """Stop the pod (its disk stays) instead of terminating it."""
    ask: bool = True


@dataclass
class PlaneLinkChanged(Message, bubble=False):
    """An attached control plane stopped answering, or answers again (forms that need it say so, and reload)."""

    reachable: bool


def message_for(entry: FeedEntry) -> FeedMessage:
    """The message that carries a feed entry."""
    from .feed import LogsAdded, MetricsAdded, RunChanged, RunEventAdded

    if isinstance(entry, RunChanged):
        return RunUpdated(entry.run)
    if isinstance(entry, RunEventAdded):
        return RunEventArrived(entry.event)
    if isinstance(entry, MetricsAdded):
        return MetricsArrived(entry.run_id, entry.points)
    assert isinstance(entry, LogsAdded)
    return LogsArrived(entry.run_id, entry.lines)
