"""The launch form: dataset (with a preview), GPU types in fallback order, command and limits."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.markup import escape
from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ..errors import ControlPlaneError, ControlPlaneUnreachable
from ..fmt import format_bytes
from ..messages import PlaneLinkChanged
from ..models import Dataset, GpuOffer, LaunchSpec, Run, Volume
from ..widgets.keys import bindings
from ..widgets.offers_table import OffersTable
from ..wording import fields_named, spec_problems
from .dialog import Dialog

if TYPE_CHECKING:
    from ..client import Client

PREVIEW_LINES = 5


SOURCE_KINDS = {"file": "local file", "dir": "local folder", "url": "https", "s3": "S3", "hf": "Hugging Face"}


def dataset_label(dataset: Dataset) -> str:
    """A dataset in the picker: name, where it comes from, size, where it is cached."""
    cached = f", cached on {', '.join(dataset.cached_on)}" if dataset.cached_on else ""
    return (f"{dataset.name}  ({SOURCE_KINDS.get(dataset.kind, dataset.kind)}, {format_bytes(dataset.size_bytes)}"
            f"{cached})")


def preview(dataset: Dataset) -> str:
    """The first lines of a dataset file, when this machine can read it."""
    path = Path(dataset.path)
    if dataset.kind in ("url", "s3", "hf"):
        pinned = f" at {dataset.revision[:12]}" if dataset.revision else ""
        return (f"{dataset.file_count} file(s) from {dataset.source}{pinned}: the pod fetches them itself, never "
                "through this machine")
    if dataset.kind == "dir":
        return f"directory with {dataset.file_count} files"
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return "(no preview: the file is on the control plane's machine)"
    if b"\x00" in head:
        return "(binary file)"
    lines = head.decode("utf-8", "replace").splitlines()
    return "\n".join(line[:100] for line in itertools.islice(lines, PREVIEW_LINES))


SPOT_LABEL = "spot (until 2027)"
SPOT_NOTE = ("spot pods are rented through RunPod's GraphQL API, which RunPod retires in early 2027 (REST v2 has "
             "no spot pods); they can be interrupted at any time")


RUNPOD_ONLY = ("#image", "#cloud_type", "#pricing")
"""Fields a local pod (a process on this machine) has no use for."""
LABEL_OF_FIELD = {"max_runtime_s": "max runtime", "budget_usd": "budget $", "keep_alive_s": "keep alive",
                  "gpu_count": "GPU count", "cloud_type": "cloud", "dataset": "dataset",
                  "outputs": "outputs folder", "sync_outputs_s": "sync outputs every", "retries": "retries",
                  "retry_failed": "retry a failing command", "gpu_types": "GPU types"}
"""The form's label of a LaunchSpec field, where it is not the field's name with spaces."""


def label_of(field: str) -> str:
    """The form's label of a LaunchSpec field (its problems are named so, the form's and the control plane's)."""
    return LABEL_OF_FIELD.get(field, field.replace("_", " "))


class LaunchScreen(Dialog[Run | None]):
    """Fill in a run and launch it; dismisses with the new run."""

    AUTO_FOCUS = "#dataset"  # the first field, not the form's scroll box

    BINDINGS = bindings("launch")
    DEFAULT_CSS = """
    LaunchScreen > .box { width: 110; max-width: 100%; height: 95%; padding: 0 2; }
    LaunchScreen Label { margin-top: 1; color: $text-muted; }
    LaunchScreen #preview { height: auto; max-height: 7; color: $text-muted; background: $boost; padding: 0 1; }
    LaunchScreen #error { color: $error; height: auto; margin-top: 1; }
    LaunchScreen #outputs_on_volume { margin-top: 1; }
    LaunchScreen Horizontal { height: auto; }
    LaunchScreen Horizontal > Vertical { width: 1fr; height: auto; margin-right: 1; }
    LaunchScreen #buttons { margin: 1 0; }
    LaunchScreen.narrow Horizontal.fields { layout: vertical; }
    LaunchScreen.narrow Horizontal.fields > Vertical { width: 1fr; margin-right: 0; }
    LaunchScreen.narrow Label { margin-top: 0; }
    """
    NARROW = 100
    """Below this many columns the fields of a row stack (label over field, one per line): side by side they cut
    their labels ("budget $ (empty: no lim") and wrapped the selects' values ("secur"/"e")."""

    def __init__(self, client: Client, default_provider: str) -> None:
        super().__init__()
        self.client = client
        self.default_provider = default_provider
        self.datasets: list[Dataset] = []
        self.all_offers: list[GpuOffer] = []
        self.unloaded: str | None = None
        """Why the datasets and offers did not load (None: they did, or are loading)."""
        self.loaded = False
        self.launch_when_loaded = False
        """ctrl+s came before the datasets and offers did (`n` then ctrl+s launches the demo): launch once in."""
        self.volumes: list[Volume] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="box"):
            yield Static("[b]New run[/b]")
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("dataset")
                    yield Select[str]([], id="dataset", prompt="loading datasets…")
                with Vertical():
                    yield Label("provider")
                    yield Select[str]([("local", "local"), ("runpod", "runpod")], id="provider",
                                      value=self.default_provider, allow_blank=False)
            yield Static("", id="preview")
            yield OffersTable(id="offers", classes="pane")
            yield Label("training command (empty with the demo dataset: the demo trainer)")
            yield Input(placeholder="python train.py --epochs 3", id="command")
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("workdir (shipped to the pod)")
                    yield Input(placeholder="/path/to/your/code", id="workdir")
                with Vertical():
                    yield Label("image")
                    yield Input(value=LaunchSpec.model_fields["image"].default, id="image")
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("GPU count")
                    yield Input(value="1", id="gpu_count", type="integer")
                with Vertical():
                    yield Label("cloud")
                    yield Select[str]([("secure", "SECURE"), ("community", "COMMUNITY"), ("any", "ALL")],
                                      value="SECURE", allow_blank=False, id="cloud_type")
                with Vertical():
                    yield Label("connect")
                    yield Select[str]([("automatic", "auto"), ("push (public URL)", "push"),
                                       ("pull (through RunPod's proxy)", "pull")],
                                      value="auto", allow_blank=False, id="connect")
                with Vertical():
                    yield Label("pricing")
                    yield Select[str]([("on demand", "on_demand"), (SPOT_LABEL, "spot")],
                                      value="on_demand", allow_blank=False, id="pricing")
                with Vertical():
                    yield Label("name")
                    yield Input(placeholder="(automatic)", id="name")
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("max runtime (empty: no limit)")
                    yield Input(placeholder="e.g. 2h", id="max_runtime")
                with Vertical():
                    yield Label("budget $ (empty: no limit)")
                    yield Input(placeholder="e.g. 5.00", id="budget", type="number")
                with Vertical():
                    yield Label("keep alive after the command ends")
                    yield Input(value="30m", id="keep_alive")  # the bound for bringing outputs home
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("outputs folder (comes home)")  # a label fits a third of the form at 160 columns
                    yield Input(value=LaunchSpec.model_fields["outputs"].default, id="outputs",
                                tooltip="The folder in the workdir the command writes its outputs to; they come home")
                with Vertical():
                    yield Label("sync outputs (empty: at the end)")
                    yield Input(placeholder="e.g. 15m", id="sync_outputs",
                                tooltip="Bring the outputs home this often while the command runs "
                                        "(empty: when it ends)")
                with Vertical():
                    yield Label("volume (datasets cached there)")
                    yield Select[str]([], id="volume", prompt="(none)")
                    yield Checkbox("outputs stay on the volume", id="outputs_on_volume", compact=True)
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("retries (default 2; local 0)")
                    yield Input(placeholder="e.g. 2", id="retries", type="integer",
                                tooltip="New pods for a lost one, resuming from its last checkpoint "
                                        "(empty: 2 on RunPod, 0 local)")
                with Vertical():
                    yield Label("retry a failing command")
                    yield Select[str]([("no", "no"), ("yes", "yes")], value="no", allow_blank=False,
                                      id="retry_failed")
                with Vertical():  # more than one: a RunPod cluster, or that many local pods
                    yield Label("nodes (each with the GPU count)")
                    yield Input(value="1", id="nodes", type="integer")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Launch (ctrl+s)", variant="success", id="launch")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < self.NARROW, "narrow")
        self.load()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < self.NARROW, "narrow")

    @work(exclusive=True, group="launch-load", exit_on_error=False)
    async def load(self) -> None:
        """Fetch datasets and offers (again when an unreachable control plane answers again)."""
        select = self.query_one("#dataset", Select)
        try:
            self.datasets = await self.client.datasets()
            self.all_offers = await self.client.gpus()
        except ControlPlaneError as exc:
            self.unloaded = exc.message
            self.launch_when_loaded = False
            select.prompt = "control plane unreachable" if isinstance(exc, ControlPlaneUnreachable) else \
                "datasets did not load"
            self.show_error(exc.message + (" The form loads once it answers again." if
                                           isinstance(exc, ControlPlaneUnreachable) else ""))
            return
        try:  # volumes are optional: a RunPod that does not answer leaves the form usable
            self.volumes = await self.client.volumes()
        except ControlPlaneError:
            self.volumes = []
        self.unloaded = None
        select.prompt = "Select"
        select.set_options([(dataset_label(d), d.id) for d in self.datasets])
        demo = next((d for d in self.datasets if d.name == "demo"), None)
        if self.datasets:
            select.value = (demo or self.datasets[0]).id
        self.show_offers()
        self.loaded = True
        if self.launch_when_loaded:
            self.launch_when_loaded = False
            self.call_after_refresh(self.action_launch)  # once the choices above are on screen

    def on_plane_link_changed(self, message: PlaneLinkChanged) -> None:
        if message.reachable and self.unloaded is not None:
            self.show_error("the control plane answers again: loading…")
            self.load()

    def show_offers(self) -> None:
        """Offers of the chosen provider; RunPod's own fields are greyed out for local pods."""
        provider = self.query_one("#provider", Select).value
        for field in RUNPOD_ONLY:
            self.query_one(field).disabled = provider == "local"
        offers = [o for o in self.all_offers if o.provider == provider]
        self.query_one("#volume", Select).set_options(
            [(f"{v.name}" + (f" ({v.data_center}, {v.size_gb} GB)" if v.data_center else ""), v.name)
             for v in self.volumes if v.provider == provider])
        table = self.query_one(OffersTable)
        table.show(offers, preselect=[offers[0].id] if len(offers) == 1 else [])
        if not offers and provider == "runpod":
            self.show_error("RunPod is not configured on this control plane: set RUNPOD_API_KEY and restart.")
        else:
            self.show_error("")

    @work(exclusive=True, group="launch-stock", exit_on_error=False)
    async def load_stock(self) -> None:
        """The offers again, with the stock for the cloud type and GPU count picked (RunPod's stock depends on
        both); the GPU types picked stay picked."""
        cloud = self.query_one("#cloud_type", Select).value
        try:
            count = int(self.query_one("#gpu_count", Input).value or "1")
        except ValueError:
            return
        if not isinstance(cloud, str) or not 1 <= count <= 8:
            return
        try:
            self.all_offers = await self.client.gpus(cloud=cloud, count=count)
        except ControlPlaneError as exc:
            self.show_error(exc.message)
            return
        self.query_one(OffersTable).restock(self.all_offers)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "gpu_count" and self.all_offers:
            self.load_stock()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "cloud_type" and self.all_offers:
            self.load_stock()
        if event.select.id == "provider":
            self.show_offers()
            self.show_preview()
        elif event.select.id == "pricing":
            self.show_error(SPOT_NOTE if event.value == "spot" else "")
        elif event.select.id in ("dataset", "volume"):
            self.show_preview()

    def show_preview(self) -> None:
        """The dataset's preview, then (RunPod) what sending it through this machine would take."""
        chosen = self.query_one("#dataset", Select).value
        dataset = next((d for d in self.datasets if d.id == chosen), None)
        self.query_one("#preview", Static).update(preview(dataset) if dataset else "")
        if dataset is not None and self.query_one("#provider", Select).value == "runpod":
            self.estimate(dataset)

    @work(exclusive=True, group="launch-estimate", exit_on_error=False)
    async def estimate(self, dataset: Dataset) -> None:
        """Ask the control plane how long the dataset takes through this machine's uplink (a large local one)."""
        volume = self.query_one("#volume", Select).value
        spec = LaunchSpec(dataset=dataset.name, gpu_types=list(self.query_one(OffersTable).picked) or ["-"],
                          provider="runpod", command="true", volume=volume if isinstance(volume, str) else None)
        try:
            said = (await self.client.data_estimate(spec)).get("message")
        except ControlPlaneError:
            return
        if said:
            self.query_one("#preview", Static).update(f"{preview(dataset)}\n[b]{escape(said)}[/b]")

    def show_error(self, message: str) -> None:
        """Inline error under the form, scrolled into view (it is below the fold of a short terminal)."""
        error = self.query_one("#error", Static)
        error.update(message)
        if message:
            self.call_after_refresh(error.scroll_visible, animate=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without launching."""
        self.dismiss(None)

    def spec(self) -> LaunchSpec:
        """The form as a LaunchSpec (ValidationError when it is not one)."""
        def text(widget_id: str) -> str | None:
            value = self.query_one(f"#{widget_id}", Input).value.strip()
            return value or None

        fields = {
            "dataset": self.query_one("#dataset", Select).value,
            "provider": self.query_one("#provider", Select).value,
            "gpu_types": list(self.query_one(OffersTable).picked),
            "command": text("command"), "workdir": text("workdir"), "image": text("image"),
            "gpu_count": text("gpu_count") or 1, "nodes": text("nodes") or 1,
            "cloud_type": self.query_one("#cloud_type", Select).value,
            "name": text("name"), "max_runtime_s": text("max_runtime"), "budget_usd": text("budget"),
            "keep_alive_s": text("keep_alive") or 0,
            "outputs": text("outputs"), "sync_outputs_s": text("sync_outputs"), "retries": text("retries"),
            "retry_failed": self.query_one("#retry_failed", Select).value == "yes",
            "spot": self.query_one("#pricing", Select).value == "spot",
            "connect": None if self.query_one("#connect", Select).value == "auto"
            else self.query_one("#connect", Select).value,
            "volume": volume if isinstance(volume := self.query_one("#volume", Select).value, str) else None,
            "outputs_on_volume": self.query_one("#outputs_on_volume", Checkbox).value or None,
        }
        if fields["dataset"] is Select.BLANK:
            fields["dataset"] = ""
        else:  # by name, as the run's facts show it, unless another dataset has that name too
            picked = next((d for d in self.datasets if d.id == fields["dataset"]), None)
            if picked is not None and sum(d.name == picked.name for d in self.datasets) == 1:
                fields["dataset"] = picked.name
        return LaunchSpec.model_validate({k: v for k, v in fields.items() if v is not None})

    def action_launch(self) -> None:
        """Validate here, then ask the control plane."""
        if self.unloaded is not None:
            self.show_error(f"cannot launch: the form could not load. {self.unloaded}")
            return
        if not self.loaded:
            self.launch_when_loaded = True
            self.show_error("loading datasets and GPUs… launching once they are in")
            return
        try:
            spec = self.spec()
            if spec.outputs_on_volume and not spec.volume:
                self.show_error("outputs on the volume: choose the volume first (or untick it)")
                return
        except ValidationError as exc:
            if any(e["loc"][:1] == ("gpu_types",) for e in exc.errors()):
                self.show_error("pick at least one GPU type (space in the table)")
                return
            self.show_error(spec_problems(exc, label_of))
            return
        self.show_error("launching…")
        self.submit(spec)

    @work(exclusive=True, group="launch-submit", exit_on_error=False)
    async def submit(self, spec: LaunchSpec) -> None:
        """Post the launch; stay open with the error when it is refused."""
        try:
            run = await self.client.launch(spec)
        except ControlPlaneError as exc:
            self.show_error(fields_named(exc.message, label_of) if exc.status == 422 else exc.message)
            return
        self.dismiss(run)
