"""The look every dialog shares: a box in the middle of the screen over the dimmed one below. A subclass sets its
box's width, height and border colour."""

from __future__ import annotations

from typing import TypeVar

from textual import events
from textual.screen import ModalScreen

from ..handler_errors import ReportsHandlerErrors

T = TypeVar("T")


class Dialog(ReportsHandlerErrors, ModalScreen[T]):
    """A modal screen whose one child container has the class `box`."""

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > .box { height: auto; max-height: 100%; padding: 1 2; border: thick $primary; background: $surface; }
    Dialog.short > .box { padding: 0 1; }
    Dialog.short .box Button { height: 1; min-height: 1; border-top: none !important; border-bottom: none !important; }
    """
    SHORT = 30
    """Below this many rows a dialog is compact (buttons one line high): at 80x24 the quit dialog's question
    scrolled out of sight above its buttons."""

    def on_mount(self) -> None:
        self.set_class(self.app.size.height < self.SHORT, "short")

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < self.SHORT, "short")
