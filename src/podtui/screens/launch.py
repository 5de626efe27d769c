"""The launch form: dataset (with a preview), GPU types in fallback order, command and limits."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from ..errors import ControlPlaneError
from ..models import Dataset, GpuOffer, LaunchSpec, Run, spec_problems
from ..widgets.offers_table import OffersTable
from .dialog import Dialog

if TYPE_CHECKING:
    from ..client import Client

PREVIEW_LINES = 5


def preview(dataset: Dataset) -> str:
    """The first lines of a dataset file, when this machine can read it."""
    path = Path(dataset.path)
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
                  "outputs": "outputs folder", "sync_outputs_s": "sync outputs every"}
"""The form's label of a LaunchSpec field, where it is not the field's name with spaces."""


class LaunchScreen(Dialog[Run | None]):
    """Fill in a run and launch it; dismisses with the new run."""

    AUTO_FOCUS = "#dataset"  # the first field, not the form's scroll box

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="launch.cancel", tooltip="Close without launching"),
        Binding("ctrl+s", "launch", "Launch", id="launch.submit", tooltip="Launch the run (in the launch form)"),
    ]
    DEFAULT_CSS = """
    LaunchScreen > .box { width: 110; max-width: 100%; height: 95%; padding: 0 2; }
    LaunchScreen Label { margin-top: 1; color: $text-muted; }
    LaunchScreen #preview { height: auto; max-height: 7; color: $text-muted; background: $boost; padding: 0 1; }
    LaunchScreen #error { color: $error; height: auto; margin-top: 1; }
    LaunchScreen Horizontal { height: auto; }
    LaunchScreen Horizontal > Vertical { width: 1fr; height: auto; margin-right: 1; }
    LaunchScreen #buttons { margin: 1 0; }
    """

    def __init__(self, client: Client, default_provider: str) -> None:
        super().__init__()
        self.client = client
        self.default_provider = default_provider
        self.datasets: list[Dataset] = []
        self.all_offers: list[GpuOffer] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="box"):
            yield Static("[b]New run[/b]")
            with Horizontal():
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
            with Horizontal():
                with Vertical():
                    yield Label("workdir (shipped to the pod)")
                    yield Input(placeholder="/path/to/your/code", id="workdir")
                with Vertical():
                    yield Label("image")
                    yield Input(value=LaunchSpec.model_fields["image"].default, id="image")
            with Horizontal():
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
            with Horizontal():
                with Vertical():
                    yield Label("max runtime (empty: no limit)")
                    yield Input(placeholder="e.g. 2h", id="max_runtime")
                with Vertical():
                    yield Label("budget $ (empty: no limit)")
                    yield Input(placeholder="e.g. 5.00", id="budget", type="number")
                with Vertical():
                    yield Label("keep alive after the command ends")
                    yield Input(value="30m", id="keep_alive")  # the bound for bringing outputs home
            with Horizontal():
                with Vertical():
                    yield Label("outputs folder (in the workdir; comes home)")
                    yield Input(value=LaunchSpec.model_fields["outputs"].default, id="outputs")
                with Vertical():
                    yield Label("sync outputs every (empty: when the command ends)")
                    yield Input(placeholder="e.g. 15m", id="sync_outputs")
                with Vertical():  # more than one: a RunPod cluster, or that many local pods
                    yield Label("nodes (each with the GPU count)")
                    yield Input(value="1", id="nodes", type="integer")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Launch (ctrl+s)", variant="success", id="launch")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="launch-load", exit_on_error=False)
    async def load(self) -> None:
        """Fetch datasets and offers."""
        try:
            self.datasets = await self.client.datasets()
            self.all_offers = await self.client.gpus()
        except ControlPlaneError as exc:
            self.show_error(exc.message)
            return
        select = self.query_one("#dataset", Select)
        select.set_options([(f"{d.name}  ({d.size_bytes / 1024:.0f} KiB, {d.kind})", d.id) for d in self.datasets])
        demo = next((d for d in self.datasets if d.name == "demo"), None)
        if self.datasets:
            select.value = (demo or self.datasets[0]).id
        self.show_offers()

    def show_offers(self) -> None:
        """Offers of the chosen provider; RunPod's own fields are greyed out for local pods."""
        provider = self.query_one("#provider", Select).value
        for field in RUNPOD_ONLY:
            self.query_one(field).disabled = provider == "local"
        offers = [o for o in self.all_offers if o.provider == provider]
        table = self.query_one(OffersTable)
        table.show(offers, preselect=[offers[0].id] if len(offers) == 1 else [])
        if not offers and provider == "runpod":
            self.show_error("RunPod is not configured on this control plane: set RUNPOD_API_KEY and restart.")
        else:
            self.show_error("")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "provider":
            self.show_offers()
        elif event.select.id == "pricing":
            self.show_error(SPOT_NOTE if event.value == "spot" else "")
        elif event.select.id == "dataset":
            dataset = next((d for d in self.datasets if d.id == event.value), None)
            self.query_one("#preview", Static).update(preview(dataset) if dataset else "")

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
            "outputs": text("outputs"), "sync_outputs_s": text("sync_outputs"),
            "spot": self.query_one("#pricing", Select).value == "spot",
            "connect": None if self.query_one("#connect", Select).value == "auto"
            else self.query_one("#connect", Select).value,
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
        try:
            spec = self.spec()
        except ValidationError as exc:
            if any(e["loc"][:1] == ("gpu_types",) for e in exc.errors()):
                self.show_error("pick at least one GPU type (space in the table)")
                return
            self.show_error(spec_problems(exc, lambda field: LABEL_OF_FIELD.get(field, field.replace("_", " "))))
            return
        self.show_error("launching…")
        self.submit(spec)

    @work(exclusive=True, group="launch-submit", exit_on_error=False)
    async def submit(self, spec: LaunchSpec) -> None:
        """Post the launch; stay open with the error when it is refused."""
        try:
            run = await self.client.launch(spec)
        except ControlPlaneError as exc:
            self.show_error(exc.message)
            return
        self.dismiss(run)
