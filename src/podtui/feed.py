"""The live feed's entries, typed: what the control plane's store builds from its rows, what GET /api/v1/events
sends as Server-Sent Events, and what `Client.events` yields.

On the wire each entry is an SSE event named by its kind (`run`, `run_event`, `metrics`, `logs`) whose data is
`wire()`, JSON written straight from the model; `parse_entry(kind, data)` validates it straight back (no dict
between: the path of one metric point in docs/architecture.md). The wire shapes are the API's: a `run` event's
data is the run itself.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from .models import LogLine, MetricPoint, Run, RunEvent


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: ClassVar[str]

    def wire(self) -> bytes:
        """The SSE data of this entry (JSON)."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_wire(cls, data: str | bytes) -> _Entry:
        return cls.model_validate_json(data)


class RunChanged(_Entry):
    """A run's row changed (status, step, cost, GPU use, ...): the whole run as it is now."""

    kind: ClassVar[str] = "run"
    run: Run

    def wire(self) -> bytes:
        return self.run.__pydantic_serializer__.to_json(self.run)

    @classmethod
    def from_wire(cls, data: str | bytes) -> RunChanged:
        return cls(run=Run.model_validate_json(data))


class RunEventAdded(_Entry):
    """Something happened to a run (an attempt, a guardrail, the end and why)."""

    kind: ClassVar[str] = "run_event"
    event: RunEvent


class MetricsAdded(_Entry):
    """Points a run's pod reported, in the order stored."""

    kind: ClassVar[str] = "metrics"
    run_id: str
    points: list[MetricPoint]


class LogsAdded(_Entry):
    """Log lines a run's pod reported, in the order stored."""

    kind: ClassVar[str] = "logs"
    run_id: str
    lines: list[LogLine]


FeedEntry = RunChanged | RunEventAdded | MetricsAdded | LogsAdded
KINDS: dict[str, type[_Entry]] = {c.kind: c for c in (RunChanged, RunEventAdded, MetricsAdded, LogsAdded)}


def parse_entry(kind: str, data: str | bytes) -> FeedEntry | None:
    """An entry from its SSE event name and data; None for a kind this version does not know (a newer server)."""
    cls = KINDS.get(kind)
    return None if cls is None else cls.from_wire(data)  # type: ignore[return-value]


def run_of(entry: FeedEntry) -> str:
    """The id of the run an entry is about."""
    if isinstance(entry, RunChanged):
        return entry.run.id
    if isinstance(entry, RunEventAdded):
        return entry.event.run_id
    return entry.run_id
