"""The key map, read from the app's and the dashboard's bindings (so a remapped key shows as remapped)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from .dialog import Dialog


class HelpScreen(Dialog[None]):
    """Every key and what it does."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close", tooltip="Close help")]
    DEFAULT_CSS = """
    HelpScreen > .box { width: 110; height: 80%; }
    """

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.key_bindings = bindings

    def compose(self) -> ComposeResult:
        lines = ["[b]podtui keys[/b]   [dim]esc, q or ? closes this[/dim]", ""]
        for binding in self.key_bindings:
            key = binding.key_display or binding.key
            # "Quit  Quit (asks when pods still run)": the tooltip alone when it begins with the description
            said = binding.description if not binding.tooltip.startswith(binding.description) else ""
            lines.append(f"  [b]{key:<12}[/b] {said}{'  ' if said else ''}[dim]{binding.tooltip}  ({binding.id})[/dim]")
        lines += ["", "Keys can be remapped in config.toml under \\[keymap], by binding id.",
                  "`:` or ctrl+p opens the command palette."]
        with VerticalScroll(classes="box"):
            yield Static("\n".join(lines))
