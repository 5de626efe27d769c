"""The SQLite store: `Store` is the engine (store/engine.py: the connections, the group-committing writer,
checkpoints, migrations) with the queries of each domain, one module each: runs, events, pods, reports, metrics,
logs (and their multi-row inserts, inserts.py), datasets, download tokens, outputs and the live feed. The schema is
store/schema.py, a run's row store/rows.py.

A metric value of NaN is stored as NULL (SQLite turns a NaN REAL into NULL anyway) and read back as NaN.
"""

from __future__ import annotations

from .datasets import DatasetQueries, DatasetRecord
from .engine import Engine, NotFound, StoreUnavailable
from .events import EventQueries
from .feed import FeedItem, FeedQueries
from .logs import SEQ_SPAN, LogQueries
from .metrics import MetricQueries
from .outputs import OutputQueries
from .pods import PodQueries
from .reports import ReportQueries, ReportResult
from .runs import RunQueries
from .tokens import TokenCheck, TokenQueries

__all__ = [
    "SEQ_SPAN", "DatasetRecord", "FeedItem", "NotFound", "ReportResult", "Store", "StoreUnavailable", "TokenCheck",
]


class Store(
    RunQueries,
    ReportQueries,
    PodQueries,
    LogQueries,
    MetricQueries,
    EventQueries,
    DatasetQueries,
    FeedQueries,
    OutputQueries,
    TokenQueries,
    Engine,
):
    """The store: its engine and the queries of runs, reports, pods, logs, metrics, events, datasets, download
    tokens, outputs and the live feed; create with `await Store.open(path)`."""
