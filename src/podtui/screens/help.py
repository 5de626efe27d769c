"""The key map, made from the action table with the keys [keymap] sets (so a remapped key shows as remapped)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..widgets.keys import bindings
from .dialog import Dialog


class HelpScreen(Dialog[None]):
    """Every key and what it does."""

    BINDINGS = bindings("help")
    DEFAULT_CSS = """
    HelpScreen > .box { width: 110; max-width: 100%; height: 80%; }
    """

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.key_bindings = bindings

    def compose(self) -> ComposeResult:
        # a grid: a long line wraps within its column (it wrapped to the box's left edge)
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column(overflow="fold", ratio=1)
        keys.add_column(style="dim", no_wrap=True)
        for binding in self.key_bindings:
            # "Quit  Quit (asks when pods still run)": the tooltip alone when it begins with the description
            said = binding.description if not binding.tooltip.startswith(binding.description) else ""
            keys.add_row(binding.key_display or binding.key,
                         Text.assemble(f"{said}  " if said else "", (binding.tooltip, "dim")), binding.id or "")
        with VerticalScroll(classes="box"):
            yield Static(Text.from_markup("[b]podtui keys[/b]   [dim]esc, q or ? closes this[/dim]\n"))
            yield Static(keys)
            yield Static("\nKeys can be remapped in config.toml under \\[keymap], by binding id.\n"
                         "`:` or ctrl+p opens the command palette.")
