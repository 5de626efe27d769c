"""The key hint line at the bottom of the dashboard (k9s keeps its hints in one line too)."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

KEPT = frozenset(("app.quit", "app.help", "app.palette"))
"""The hints a narrow line keeps when it drops others."""
_ENABLED = Style()
_DISABLED = Style(dim=True)


class KeyHints(Widget):
    """The screen's shown bindings as one line of text, each clickable.

    Textual's Footer mounts a widget per key and mounts them all again whenever the bindings change (focus
    moves, a screen opens): six times before the dashboard's first frame, a quarter second of a cold start.
    This repaints one line instead."""

    COMPONENT_CLASSES = {"key-hints--key", "key-hints--description"}
    DEFAULT_CSS = """
    KeyHints { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    KeyHints > .key-hints--key { color: $footer-key-foreground; background: $footer-key-background;
                                 text-style: bold; }
    KeyHints > .key-hints--description { color: $footer-description-foreground; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._spans: list[tuple[int, int, str]] = []  # (start, end, key) of each hint, for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-hints--key")
        description_style = self.get_component_rich_style("key-hints--description")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        spans: list[tuple[int, int, str]] = []
        actions: set[str] = set()
        palette = self.app.COMMAND_PALETTE_BINDING if self.app.ENABLE_COMMAND_PALETTE else None
        hints = [(b, enabled) for key, (_, b, enabled, _) in self.screen.active_bindings.items()
                 if b.show and key != palette]
        palette_binding = self.screen.active_bindings.get(palette) if palette else None
        if palette_binding is not None:
            hints.append((palette_binding.binding, palette_binding.enabled))
        shown = []
        for binding, enabled in hints:
            if binding.action in actions:  # several keys for one action: the first is enough
                continue
            actions.add(binding.action)
            shown.append((binding, enabled, f" {self.app.get_key_display(binding)} ",
                          f"{binding.description or binding.action} "))
        # Too narrow for all: the screen's last hints go first; quit and help stay (help shows every key).
        room = self.size.width
        while sum(len(k) + len(d) for _, _, k, d in shown) > room:
            dropped = next((i for i in range(len(shown) - 1, -1, -1) if shown[i][0].id not in KEPT), None)
            if dropped is None:
                break
            del shown[dropped]
        for binding, enabled, key, description in shown:
            start = len(text)
            dim = _ENABLED if enabled else _DISABLED
            text.append(key, style=key_style + dim)
            text.append(description, style=description_style + dim)
            spans.append((start, len(text), binding.key))
        self._spans = spans
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key.split(",")[0].strip())
                return
