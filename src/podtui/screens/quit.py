"""Quitting while pods still run: terminate them all, keep them (with the control plane in the background, or
alone), or stay."""

from __future__ import annotations

from typing import Literal

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, Static

from ..fmt import format_duration
from ..widgets.keys import bindings
from .dialog import Dialog

QuitChoice = Literal["terminate", "background", "keep", "cancel"]


class QuitScreen(Dialog[QuitChoice]):
    """The quit guard."""

    BINDINGS = bindings("quit")
    DEFAULT_CSS = """
    QuitScreen > .box { width: 76; border: thick $warning; }
    QuitScreen Button { width: 100%; margin-top: 1; }
    """

    def __init__(self, live: int, embedded: bool, billing: bool = True, wait_s: float = 1800) -> None:
        super().__init__()
        self.live = live
        self.embedded = embedded
        self.billing = billing
        """Some of the pods are rented (not local processes)."""
        self.wait_s = wait_s
        """How long a pod waits, after its command ends, for a control plane to take its reports and outputs."""

    def compose(self) -> ComposeResult:
        pods = f"{self.live} pod{'s' if self.live != 1 else ''}"
        them = "them" if self.live != 1 else "it"
        warning = (" This podtui runs the control plane itself. Each pod keeps its own max runtime, budget and "
                   "stall limits and keeps its reports until they are fetched; in the background, the control "
                   "plane goes on storing them (push-mode pods need it) and the next `podtui` attaches to it. Kept "
                   f"alone (k), a pod waits {format_duration(self.wait_s)} after its command ends for podtui to "
                   "start again: its outputs are lost after that."
                   if self.embedded else f" The control plane this podtui is attached to keeps supervising {them}.")
        with Vertical(classes="box"):
            yield Static(f"{pods} still running{' and billing' if self.billing else ''}.{warning} Terminating "
                         f"{them} loses the outputs not home yet.")
            yield Button(f"Terminate {pods} and quit (t)", variant="error", id="terminate")
            if self.embedded:
                yield Button(f"Keep {them}, and the control plane in the background (b)", variant="success",
                             id="background")
            yield Button(f"Keep {them} running and quit (k)", variant="warning", id="keep")
            yield Button("Cancel (esc)", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)  # type: ignore[arg-type]

    def action_choose(self, choice: QuitChoice) -> None:
        """Dismiss with the choice."""
        if choice == "background" and not self.embedded:
            return
        self.dismiss(choice)
