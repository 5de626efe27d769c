"""The look every dialog shares: a box in the middle of the screen over the dimmed one below. A subclass sets its
box's width, height and border colour."""

from __future__ import annotations

from typing import TypeVar

from textual.screen import ModalScreen

from ..handler_errors import ReportsHandlerErrors

T = TypeVar("T")


class Dialog(ReportsHandlerErrors, ModalScreen[T]):
    """A modal screen whose one child container has the class `box`."""

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > .box { height: auto; padding: 1 2; border: thick $primary; background: $surface; }
    """
