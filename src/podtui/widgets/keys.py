"""Textual bindings made from the action table (podtui/actions.py): every screen's BINDINGS, and the help
screen's list with the keys a user remapped in `[keymap]`."""

from __future__ import annotations

from collections.abc import Mapping

from textual.binding import Binding, BindingType

from ..actions import Action, Scope, help_actions, in_scope


def binding(action: Action, key: str | None = None) -> Binding:
    """One action as a Textual binding (with another key when given); a `panel` one asks the dashboard to run it
    on its `RunPanel` (`Dashboard.action_panel`)."""
    name = f"panel({action.action!r})" if action.scope == "panel" else action.action
    return Binding(key or action.keys, name, action.description, show=action.show,
                   key_display=None if key else action.key_display, id=action.id, tooltip=action.tooltip)


def bindings(*scopes: Scope) -> list[BindingType]:
    """A screen's (or widget's) BINDINGS: its scopes' actions."""
    return [binding(a) for scope in scopes for a in in_scope(scope)]


def help_bindings(keymap: Mapping[str, str]) -> list[Binding]:
    """The help screen's keys, each as the user's [keymap] sets it."""
    return [binding(a, keymap.get(a.id)) for a in help_actions()]
