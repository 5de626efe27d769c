"""The runs table: name, provider, GPU, GPU use, status, step, last loss with a sparkline, $/h, $ spent, uptime.

When its rows are wider than the table, the least needed columns go first ($/h, provider, the trend, GPU use, step,
GPU: one that fits again beside the ones after it comes back), then names are cut to 12 cells, then the loss and the
time go, and only then are names cut shorter: every column shown is whole, and the status and the cost stay."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import DataTable

from ..fmt import format_duration, sparkline
from ..wording import status_label
from .palette import status_style, theme_colour

if TYPE_CHECKING:  # the models load with the control plane's runs; the first frame shows the store's (StoredRun)
    from textual.app import App

    from ..models import Run
    from ..stored_runs import StoredRun

COLUMNS = ("name", "provider", "gpu", "use", "status", "step", "loss", "trend", "$/h", "spent", "time")
DROPPED_FIRST = ("$/h", "provider", "trend", "use", "step", "gpu")
"""The columns a narrow table leaves out, in this order, until its rows fit."""
DROPPED_LAST = ("loss", "time")
"""Left out only when names cut to NAME_KEPT still do not fit (the detail beside the table shows the loss)."""
NAME_WIDTH = 24
"""A longer run name is cut with "…" in the table (whole in the run detail)."""
NAME_KEPT = 12
"""Names are cut no shorter than this while a column in DROPPED_LAST can make room instead."""
MIN_NAME_WIDTH = 6
"""How short a name may be cut for a narrow table to show the status and the cost."""
GPU_WORDS = ("NVIDIA ", "GeForce ", "AMD ", "Radeon ")
"""Words a GPU type's id starts with that tell nothing in a narrow column ("NVIDIA GeForce RTX 4090")."""


def short_gpu(gpu_type: str | None) -> str:
    """A GPU type as the table shows it: "NVIDIA GeForce RTX 4090" -> "RTX 4090"."""
    if not gpu_type:
        return "-"
    for word in GPU_WORDS:
        gpu_type = gpu_type.removeprefix(word)
    return gpu_type


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, ending in "…" when cut."""
    return text if len(text) <= width else text[:width - 1] + "…"


def gpu_use(app: App[object], run: Run | StoredRun) -> str | Text:
    """GPU utilisation as the provider reports it; in the error colour while a live pod idles (it bills all the
    same)."""
    if run.gpu_util is None or not run.status.is_live:
        return "-"
    idle = run.gpu_util < 10 and run.status == "training"
    return Text(f"{run.gpu_util:.0f}%", f"bold {theme_colour(app, 'text-error')}" if idle else "")


def run_cells(app: App[object], run: Run | StoredRun, losses: list[float], now: float) -> list[str | Text]:
    """The row of one run."""
    label = status_label(run)
    status = Text(label, status_style(app, label))
    if run.status == "downloading" and run.progress and run.progress.bytes_total:
        status.append(f" {100 * run.progress.bytes_done / run.progress.bytes_total:.0f}%")
    loss = "-" if run.last_loss is None else f"{run.last_loss:.4g}"
    price = "-" if run.price_per_hour is None else f"{run.price_per_hour:.2f}"
    started = run.started_at or run.created_at
    gpu = short_gpu(run.gpu_type)
    spec = getattr(run, "spec", None)  # the store's runs on the first frame have none: the control plane's do
    if spec is not None and spec.nodes > 1:  # nodes x GPUs each
        gpu = f"{spec.nodes}x{spec.gpu_count} {gpu}"
    return [cut(run.name, NAME_WIDTH), run.provider, gpu, gpu_use(app, run), status,
            "-" if run.last_step is None else str(run.last_step), loss,
            Text(sparkline(losses, 8), theme_colour(app, "text-primary")),
            price, f"{run.cost_at(now):.2f}", format_duration((run.ended_at or now) - started)]


class RunsTable(DataTable[str | Text]):
    """Every run, newest first; the cursor selects the run shown beside it."""

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.border_title = "runs"
        self._shown: tuple[list[Run | StoredRun], dict[str, list[float]]] = ([], {})
        self._refit = False
        self._widest: dict[str, int] = {}
        """Each column's widest cell since the last resize: a loss going from "2.263" to "0.2963" and back made
        the $/h column come and go every half second. Not the status's: it changes a few times in a run's life,
        and "downloading 100%" held hid the $/h column for the rest of it."""
        self._set_columns(COLUMNS)
        self.app.theme_changed_signal.subscribe(self, lambda _: self.show(*self._shown))

    def on_resize(self, event: events.Resize) -> None:
        """Fitted again from scratch: rows fitted to a width the table had while laid out keep their cut cells
        and column widths otherwise."""
        self._refit = True
        self._widest = {}
        self.show(*self._shown)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        self.clear(columns=True)
        for column in columns:
            self.add_column(column, key=column)

    def fitting(self, rows: list[list[str | Text]]) -> tuple[str, ...]:
        """The columns to show: all of them, less the first of DROPPED_FIRST while the rows are wider than the
        table; past those, the names are cut shorter (in `rows`), down to MIN_NAME_WIDTH."""
        widths = {column: max(cell_len(column), self._widest.get(column, 0)) for column in COLUMNS}
        for cells in rows:
            for column, value in zip(COLUMNS, cells, strict=True):
                widths[column] = max(widths[column], value.cell_len if isinstance(value, Text) else cell_len(value))
        self._widest = {column: width for column, width in widths.items() if column != "status"}
        room = self.scrollable_content_region.width
        pad = 2 * self.cell_padding
        shown = list(COLUMNS)
        for column in DROPPED_FIRST:
            if room <= 0 or sum(widths[c] + pad for c in shown) <= room:
                break
            shown.remove(column)
        # past those, names are cut to NAME_KEPT before the loss and the time go ("nante…" told no run apart)
        kept_name = min(widths["name"], NAME_KEPT)
        for column in DROPPED_LAST:
            if room <= 0 or sum(widths[c] + pad for c in shown) - widths["name"] + kept_name <= room:
                break
            shown.remove(column)
        # a column left out may fit again beside the ones dropped after it (160 columns lost the provider with
        # room to spare)
        for column in [c for c in (*DROPPED_LAST[::-1], *DROPPED_FIRST[::-1]) if c not in shown]:
            if room > 0 and sum(widths[c] + pad for c in shown) + widths[column] + pad <= room:
                shown.append(column)
        shown.sort(key=COLUMNS.index)
        over = sum(widths[c] + pad for c in shown) - room
        if room > 0 and over > 0:  # an 80-column terminal cut the time column ("1m" of "1m43s")
            name_width = max(MIN_NAME_WIDTH, widths["name"] - over)
            for cells in rows:
                cells[0] = cut(str(cells[0]), name_width)
        return tuple(shown)

    def show(self, runs: list[Run | StoredRun], losses: dict[str, list[float]]) -> None:
        """Update rows in place; rebuild (keeping the cursor on its run) when runs come or go, or the columns that
        fit change."""
        self._shown = (runs, losses)
        now = time.time()
        rows = [run_cells(self.app, run, losses.get(run.id, []), now) for run in runs]
        columns = self.fitting(rows)
        ids = [r.id for r in runs]
        if columns != tuple(k.value for k in self.columns) or self._refit:
            self._refit = False
            selected = self.selected_run_id
            self._set_columns(columns)
        elif ids == [k.value for k in self.rows]:
            for run, cells in zip(runs, rows, strict=True):
                for column, value in zip(COLUMNS, cells, strict=True):
                    if column in columns:
                        self.update_cell(run.id, column, value, update_width=True)  # "pending" becomes "training"
            return
        else:
            selected = self.selected_run_id
            self.clear()
        for run, cells in zip(runs, rows, strict=True):
            self.add_row(*(value for column, value in zip(COLUMNS, cells, strict=True) if column in columns),
                         key=run.id)
        if selected in ids:
            self.move_cursor(row=ids.index(selected))

    def move_to(self, run_id: str) -> None:
        """Put the cursor on a run's row (which selects it)."""
        if run_id in self.rows:
            self.move_cursor(row=self.get_row_index(run_id))

    @property
    def selected_run_id(self) -> str | None:
        """The run under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value
