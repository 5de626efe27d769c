"""The runs table: name, provider, GPU, GPU use, status, step, last loss with a sparkline, $/h, $ spent, uptime."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import DataTable

from ..fmt import format_duration, sparkline
from .palette import status_style, theme_colour

if TYPE_CHECKING:  # the models load with the first runs, not for the first frame
    from textual.app import App

    from ..models import Run

COLUMNS = ("name", "provider", "gpu", "use", "status", "step", "loss", "trend", "$/h", "spent", "time")


def gpu_use(app: App[object], run: Run) -> str | Text:
    """GPU utilisation as the provider reports it; in the error colour while a live pod idles (it bills all the
    same)."""
    if run.gpu_util is None or not run.status.is_live:
        return "-"
    idle = run.gpu_util < 10 and run.status == "training"
    return Text(f"{run.gpu_util:.0f}%", f"bold {theme_colour(app, 'text-error')}" if idle else "")


def run_cells(app: App[object], run: Run, losses: list[float], now: float) -> list[str | Text]:
    """The row of one run."""
    status = Text(run.status.value, status_style(app, run.status.value))
    if run.status == "downloading" and run.progress and run.progress.bytes_total:
        status.append(f" {100 * run.progress.bytes_done / run.progress.bytes_total:.0f}%")
    loss = "-" if run.last_loss is None else f"{run.last_loss:.4g}"
    price = "-" if run.price_per_hour is None else f"{run.price_per_hour:.2f}"
    started = run.started_at or run.created_at
    return [run.name, run.provider, run.gpu_type or "-", gpu_use(app, run), status,
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
        for column in COLUMNS:
            self.add_column(column, key=column)
        self.border_title = "runs"
        self._shown: tuple[list[Run], dict[str, list[float]]] = ([], {})
        self.app.theme_changed_signal.subscribe(self, lambda _: self.show(*self._shown))

    def show(self, runs: list[Run], losses: dict[str, list[float]]) -> None:
        """Update rows in place; rebuild (keeping the cursor on its run) when runs come or go."""
        self._shown = (runs, losses)
        now = time.time()
        ids = [r.id for r in runs]
        if ids != [k.value for k in self.rows]:
            selected = self.selected_run_id
            self.clear()
            for run in runs:
                self.add_row(*run_cells(self.app, run, losses.get(run.id, []), now), key=run.id)
            if selected in ids:
                self.move_cursor(row=ids.index(selected))
            return
        for run in runs:
            for column, value in zip(COLUMNS, run_cells(self.app, run, losses.get(run.id, []), now), strict=True):
                self.update_cell(run.id, column, value, update_width=True)  # "pending" becomes "training"

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
