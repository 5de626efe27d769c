"""The volumes: storage that outlives pods (RunPod network volumes, local folders), what each costs, which runs use
it, and the datasets cached on it (a run launched with `--volume` finds them there and moves no byte)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..errors import ControlPlaneError
from ..fmt import format_bytes
from ..handler_errors import ReportsHandlerErrors
from ..live import LiveRuns
from ..messages import PlaneLinkChanged, RunUpdated
from ..widgets.key_hints import KeyHints
from ..widgets.keys import bindings
from ..wording import volume_losses
from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Dataset, Volume

NO_VOLUMES = ("No volumes yet. A volume keeps datasets between runs, so a second run moves no byte:\n"
              "  podtui volumes create NAME --provider local               a folder under the data dir\n"
              "  podtui volumes create NAME --size GB --dc DATA_CENTER     a RunPod network volume (bills monthly)\n"
              "then launch with --volume NAME (or pick it in the launch form).")


def size_text(volume: Volume) -> str:
    """A RunPod volume's size, or what a local one holds."""
    if volume.size_gb is not None:
        return f"{volume.size_gb} GB"
    return format_bytes(volume.used_bytes) + " used" if volume.used_bytes is not None else "-"


def price_text(volume: Volume) -> str:
    """Dollars a month ("-" for a local volume: it costs nothing)."""
    return f"${volume.price_per_month:.2f}" if volume.price_per_month is not None else "-"


COLUMNS = ("name", "provider", "data center", "size", "type", "$/month", "in use by", "cached")
NARROW_COLUMNS = ("name", "provider", "data center", "size", "$/month", "cached")
"""Below NARROW columns the type and the runs using a volume are left to the facts below the table."""
NARROW = 110


def cached_text(names: list[str], most: int = 2) -> str:
    """The datasets cached on a volume, in a cell: the first few and how many more."""
    if not names:
        return "-"
    more = len(names) - most
    return ", ".join(names[:most]) + (f" +{more}" if more > 0 else "")


def volume_row(volume: Volume, run_names: Callable[[str], str] = str) -> dict[str, str]:
    """The table's cells by column."""
    return {"name": volume.name, "provider": volume.provider, "data center": volume.data_center or "-",
            "size": size_text(volume), "type": volume.type or "-", "$/month": price_text(volume),
            "in use by": ", ".join(run_names(r) for r in volume.in_use_by) or "-", "cached": cached_text(volume.cached)}


def volume_facts(volume: Volume, datasets: dict[str, Dataset], run_names: Callable[[str], str] = str) -> Table:
    """The selected volume: where it is, what it costs, who uses it, and each dataset cached on it."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    if volume.provider == "runpod":
        grid.add_row("volume", f"RunPod network volume {volume.name} ({volume.id})")
        grid.add_row("where", f"{volume.data_center or '-'}: pods using it run there, Secure Cloud, mounted at "
                              "/workspace")
        grid.add_row("cost", f"{size_text(volume)} {volume.type or ''}, about {price_text(volume)} a month until "
                             "deleted")
    else:
        grid.add_row("volume", f"local volume {volume.name}, {size_text(volume)}")
        grid.add_row("where", volume.path or "-")
    grid.add_row("in use by", ", ".join(f"{run_names(r)} ({r})" if run_names(r) != r else r
                                        for r in volume.in_use_by) or "no run now")
    cached = Table.grid(padding=(0, 2))
    cached.add_column(no_wrap=True)
    cached.add_column(style="dim", no_wrap=True)
    cached.add_column(justify="right", no_wrap=True)
    cached.add_column(style="dim", overflow="ellipsis")
    for name in volume.cached:
        dataset = datasets.get(name)
        if dataset is None:  # removed from the registry since; its bytes stay on the volume
            cached.add_row(name, "-", "-", "no longer registered")
        else:
            cached.add_row(name, dataset.kind, format_bytes(dataset.size_bytes),
                           dataset.revision or dataset.source or dataset.path)
    grid.add_row("cached", cached if volume.cached else
                 Text("nothing yet: the first run launched with --volume " + volume.name + " caches its dataset"
                      + (f" (or `podtui datasets push NAME --volume {volume.name}`)" if volume.provider == "runpod"
                         else "")))
    return grid


class VolumesScreen(ReportsHandlerErrors, Screen[None]):
    """The volumes of every provider the control plane has, with the datasets cached on each."""

    BINDINGS = bindings("volumes")
    DEFAULT_CSS = """
    VolumesScreen #volumes { height: auto; max-height: 60%; }
    VolumesScreen #facts-box { height: 1fr; }
    VolumesScreen #facts { height: auto; padding: 0 1; }
    """

    def __init__(self, client: Client, live: LiveRuns, default_provider: str) -> None:
        super().__init__()
        self.client = client
        self.live = live
        """The app's runs (the names of those using a volume)."""
        self.default_provider = default_provider
        self.volumes: list[Volume] = []
        """The volumes as last listed."""
        self.datasets: dict[str, Dataset] = {}
        """The registered datasets by name (what the cached ones are)."""
        self.loaded = False
        self._statuses: dict[str, str] = {}
        """The last status seen of each run on a volume."""
        self._columns: tuple[str, ...] = ()
        self._loading = False
        self._again = False
        """Something changed while a list was on its way: list once more after it."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="volumes", cursor_type="row", zebra_stripes=True, classes="pane")
            with VerticalScroll(id="facts-box", classes="pane"):
                yield Static("listing the volumes…", id="facts")
        yield KeyHints()

    def on_mount(self) -> None:
        table = self.query_one("#volumes", DataTable)
        table.border_title = "volumes"
        self._fit_columns(self.app.size.width)
        self.query_one("#facts-box").border_title = "volume"
        table.focus()
        self.load()

    def on_resize(self, event: events.Resize) -> None:
        was = self.selected
        if self._fit_columns(event.size.width):
            self.show(self.volumes, self.datasets, was)

    def _fit_columns(self, width: int) -> bool:
        """The table's columns for this width; True when they changed."""
        columns = COLUMNS if width >= NARROW else NARROW_COLUMNS
        if columns == self._columns:
            return False
        self._columns = columns
        table = self.query_one("#volumes", DataTable)
        table.clear(columns=True)
        for label in columns:
            table.add_column(label, key=label)
        return True

    @property
    def selected(self) -> Volume | None:
        """The volume under the table's cursor."""
        table = self.query_one("#volumes", DataTable)
        if not self.volumes or table.row_count == 0:
            return None
        return self.volumes[min(table.cursor_row, len(self.volumes) - 1)]

    def reload(self) -> None:
        """List again, or once more after the list on its way (a burst of changes is one more list)."""
        if self._loading:
            self._again = True
        else:
            self.load()

    @work(exclusive=True, group="volumes", exit_on_error=False)
    async def load(self) -> None:
        """The volumes and the datasets (for what the cached ones are), asked together."""
        self._loading = True
        try:
            await self._list()
        finally:
            self._loading = False
            if self._again:
                self._again = False
                self.call_later(self.load)

    async def _list(self) -> None:
        listed, datasets = await asyncio.gather(self.client.volumes(), self.client.datasets(),
                                                return_exceptions=True)
        if isinstance(listed, ControlPlaneError):
            # RunPod not answering should not hide the local volumes: say why, show those
            self.notify(listed.message, severity="error", timeout=15)
            try:
                listed = await self.client.volumes("local")
            except ControlPlaneError:
                listed = []
        if isinstance(listed, BaseException):
            raise listed
        if isinstance(datasets, BaseException):
            if not isinstance(datasets, ControlPlaneError):
                raise datasets
            datasets = []
        self.loaded = True
        self.show(listed, {d.name: d for d in datasets})

    def show(self, volumes: list[Volume], datasets: dict[str, Dataset], was: Volume | None = None) -> None:
        """Fill the table, keeping the cursor on the volume it was on."""
        was = was or self.selected
        self.volumes = sorted(volumes, key=lambda v: (v.provider != self.default_provider, v.provider, v.name))
        self.datasets = datasets
        table = self.query_one("#volumes", DataTable)
        table.clear()
        for volume in self.volumes:
            cells = volume_row(volume, self.live.name_of)
            table.add_row(*(cells[c] for c in self._columns), key=f"{volume.provider}/{volume.name}")
        if was is not None:
            keys = [(v.provider, v.name) for v in self.volumes]
            if (was.provider, was.name) in keys:
                table.move_cursor(row=keys.index((was.provider, was.name)))
        table.border_title = f"volumes ({len(self.volumes)})"
        self.show_facts()

    def show_facts(self) -> None:
        volume = self.selected
        facts = self.query_one("#facts", Static)
        if volume is None:
            facts.update(NO_VOLUMES if self.loaded else "listing the volumes…")
            self.query_one("#facts-box").border_title = "volume"
            return
        self.query_one("#facts-box").border_title = f"volume {volume.name}"
        facts.update(volume_facts(volume, self.datasets, self.live.name_of))

    @on(DataTable.RowHighlighted, "#volumes")
    def _highlighted(self) -> None:
        self.show_facts()

    def on_run_updated(self, message: RunUpdated) -> None:
        """A run on a volume started, began training (its dataset is cached by then) or ended: list again. Not
        on its every step: a RunPod list is a request to RunPod."""
        run = message.run
        if not run.spec.volume:
            return
        status, self._statuses[run.id] = self._statuses.get(run.id), run.status.value
        using = any(run.id in v.in_use_by for v in self.volumes)
        turned = status is not None and status != run.status.value and \
            (run.status.value == "training" or run.status.is_final)
        if turned or using != run.pod_in_use(time.time()):
            self.reload()

    def on_plane_link_changed(self, message: PlaneLinkChanged) -> None:
        if message.reachable:
            self.reload()

    def action_refresh(self) -> None:
        """List the volumes again."""
        self.load()

    def action_delete_volume(self) -> None:
        """Delete the selected volume and everything on it, after asking; a volume a pod uses is kept."""
        volume = self.selected
        if volume is None:
            self.notify("no volume selected", severity="warning")
            return
        if volume.in_use_by:  # said at once, as the control plane would refuse it
            self.notify(f"volume {volume.name} is in use by run(s) {', '.join(volume.in_use_by)}; terminate them "
                        "first", severity="warning", timeout=10)
            return
        losses = volume_losses(volume, self.live.runs.values())
        question = f"Delete {volume.provider} volume [b]{volume.name}[/b] and everything on it? {escape(losses)}"

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.remove_volume(volume)

        self.app.push_screen(ConfirmScreen(question, yes="Delete"), answered)

    @work(group="volume-remove", exit_on_error=False)
    async def remove_volume(self, volume: Volume) -> None:
        """Ask the control plane to delete a volume; its refusal (a pod uses it, RunPod said no) is shown as is."""
        try:
            gone = await self.client.remove_volume(volume.name, volume.provider)
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error", timeout=15)
        else:
            self.notify(f"deleted {gone.provider} volume {gone.name}")
        self.load()
