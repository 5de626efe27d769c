"""The TUI's actions in one table: each one's binding id, keys, words and screen. The screens' bindings, the command
palette, the help screen and the `[keymap]` checks are all made from it (widgets/keys.py turns rows into Textual
bindings). No textual here: `podtui doctor` checks a keymap without loading the UI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Scope = Literal["app", "dashboard", "panel", "detail", "launch", "offers", "help", "quit", "confirm",
                "volumes"]


@dataclass(frozen=True)
class Action:
    """One thing a key does on one screen."""

    id: str
    """The binding id: what `[keymap]` in config.toml names."""
    keys: str
    """Textual key names, comma-separated ("escape,c")."""
    action: str
    """The Textual action string ("terminate(False)")."""
    description: str
    """The key line's word."""
    tooltip: str
    """What it does, in a line (help, the palette)."""
    scope: Scope
    """The screen (or widget) whose bindings it is; `app` ones hold on every screen, `panel` ones (the shown run's
    chart and logs: `RunPanel`'s actions) are bound on the dashboard, so they hold wherever its focus is."""
    show: bool = True
    """Shown on the key line."""
    key_display: str | None = None
    command: str | None = None
    """The command palette's title ("run: new"), when the palette offers it."""

    @property
    def key_set(self) -> frozenset[str]:
        return keys_of(self.keys)


ACTIONS: tuple[Action, ...] = (
    Action("app.quit", "q", "quit_guarded", "Quit", "Quit (asks when pods still run)", "app"),
    Action("app.help", "question_mark", "help", "Help", "Show every key", "app", key_display="?"),
    Action("app.palette", "colon,ctrl+p", "command_palette", "Commands", "Open the command palette", "app",
           show=False, key_display=":"),
    Action("run.new", "n", "new_run", "New run", "Open the launch form", "dashboard", command="run: new"),
    Action("run.open", "enter", "open_run", "Open run", "The selected run's launch spec, pod, cost and events",
           "dashboard", command="run: open"),
    Action("run.zoom", "z", "zoom", "Zoom", "Chart and logs full width (z again or esc: back)", "dashboard", show=False,
           command="run: zoom"),
    Action("run.terminate", "ctrl+d", "terminate", "Terminate", "Terminate the run's pod (asks)", "dashboard",
           command="run: terminate"),
    Action("run.kill", "ctrl+k", "terminate(False)", "Kill", "Terminate the run's pod without asking", "dashboard",
           show=False),
    Action("run.stop", "s", "stop", "Stop", "Stop the run's pod (asks)", "dashboard", command="run: stop"),
    Action("run.back", "escape", "unzoom", "Back", "Leave the full-width view", "dashboard", show=False),
    Action("logs.focus", "l", "focus_logs", "Logs", "Focus the log stream", "panel"),
    Action("logs.filter", "slash", "filter", "Filter", "Filter log lines", "panel", key_display="/",
           command="logs: filter"),
    Action("logs.follow", "f", "follow", "Follow", "Follow new log lines on/off", "panel",
           command="logs: follow"),
    Action("logs.timestamps", "t", "timestamps", "Times", "Timestamps on/off", "panel", show=False,
           command="logs: timestamps"),
    Action("chart.log_y", "g", "log_y", "Log-y", "Logarithmic y axis on/off", "panel", command="chart: log-y"),
    Action("chart.smooth_more", "plus", "smoothing(0.1)", "Smooth+", "More smoothing", "panel", show=False,
           key_display="+"),
    Action("chart.smooth_less", "minus", "smoothing(-0.1)", "Smooth-", "Less smoothing", "panel", show=False,
           key_display="-"),
    Action("chart.x_axis", "x", "x_axis", "Step/time", "x axis by step or wall time", "panel", show=False,
           command="chart: step / wall time"),
    Action("logs.older", "h", "older_logs", "Older", "Page in older log lines from the store", "panel",
           show=False, command="logs: older"),
    Action("chart.compare", "c", "compare", "Compare",
           "Overlay this run's loss on the next run you select (again: clear)", "panel", command="run: compare"),
    Action("volumes.open", "v", "volumes", "Volumes", "The volumes, their cost and the datasets cached on them",
           "dashboard", show=False, command="volumes: show"),
    Action("detail.back", "escape", "app.pop_screen", "Back", "Back to the dashboard", "detail"),
    Action("detail.terminate", "ctrl+d", "terminate", "Terminate", "Terminate the pod (asks)", "detail"),
    Action("detail.stop", "s", "stop", "Stop", "Stop the pod (asks)", "detail"),
    Action("detail.sync_outputs", "o", "sync_outputs", "Outputs now",
           "Bring the run's outputs home now (while its command runs)", "detail"),
    Action("volumes.back", "escape", "app.pop_screen", "Back", "Back to the dashboard", "volumes"),
    Action("volumes.delete", "d,delete", "delete_volume", "Delete",
           "Delete a volume and all on it (in the volumes view; asks; kept while a pod uses it)", "volumes"),
    Action("volumes.refresh", "r", "refresh", "Refresh", "List the volumes again (in the volumes view)", "volumes"),
    Action("launch.cancel", "escape", "cancel", "Cancel", "Close without launching", "launch"),
    Action("launch.submit", "ctrl+s", "launch", "Launch", "Launch the run (in the launch form)", "launch"),
    Action("offers.pick", "space", "toggle_pick", "Pick GPU", "Add/remove as a fallback", "offers"),
    Action("help.close", "escape,q,question_mark", "dismiss", "Close", "Close help", "help"),
    Action("quit.terminate", "t", "choose('terminate')", "Terminate all", "Terminate every live pod", "quit"),
    Action("quit.background", "b", "choose('background')", "Keep, supervised",
           "Quit, leave pods running, and keep the control plane running in the background", "quit"),
    Action("quit.keep", "k", "choose('keep')", "Keep running", "Quit and leave pods running", "quit"),
    Action("quit.cancel", "escape,c", "choose('cancel')", "Cancel", "Stay in podtui", "quit"),
    Action("confirm.yes", "y", "answer(True)", "Yes", "Confirm", "confirm"),
    Action("confirm.no", "n,escape", "answer(False)", "No", "Cancel", "confirm"),
)
BY_ID = {a.id: a for a in ACTIONS}

HELP_SCOPES: tuple[Scope, ...] = ("app", "dashboard", "panel", "detail", "volumes", "launch")
"""The screens whose keys the help screen lists (a key listed once: the first screen's)."""

ACTIVE_TOGETHER: tuple[frozenset[Scope], ...] = (
    frozenset({"app", "dashboard", "panel"}), frozenset({"app", "detail"}), frozenset({"app", "launch", "offers"}),
    frozenset({"app", "help"}), frozenset({"app", "quit"}), frozenset({"app", "confirm"}),
    frozenset({"app", "volumes"}),
)
"""The scopes whose bindings hold at the same time (a screen's own, the app's, and its widgets')."""


def keys_of(keys: str) -> frozenset[str]:
    """The keys of a comma-separated key string."""
    return frozenset(k.strip() for k in keys.split(",") if k.strip())


def in_scope(scope: Scope) -> list[Action]:
    """A scope's actions, in the table's order."""
    return [a for a in ACTIONS if a.scope == scope]


def help_actions() -> list[Action]:
    """What the help screen lists: the app's keys, the dashboard's, then the run detail's, the volumes view's and
    the launch form's that use other keys."""
    listed: list[Action] = []
    for scope in HELP_SCOPES:
        keys = {a.keys for a in listed}
        listed += [a for a in in_scope(scope) if scope in ("app", "dashboard", "panel") or a.keys not in keys]
    return listed


def palette_actions() -> list[Action]:
    """The dashboard's actions the command palette offers."""
    return [a for a in ACTIONS if a.command is not None]


def keymap_problems(keymap: Mapping[str, str]) -> list[str]:
    """Why a `[keymap]` cannot be used: an id that names no binding, or a key another binding of the same screen
    owns (a remap would silently take it over: `"run.new" = "q"` took Quit). Empty when it is fine."""
    problems = []
    for binding_id in keymap:
        if binding_id not in BY_ID:
            close = difflib.get_close_matches(binding_id, BY_ID, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else " (help, `?`, lists the binding ids)"
            problems.append(f"[keymap] names {binding_id!r}, which is no binding{hint}")
    keys = {a.id: keys_of(keymap[a.id]) if a.id in keymap else a.key_set for a in ACTIONS}
    for binding_id, value in keymap.items():
        if binding_id not in BY_ID:
            continue
        if not keys_of(value):
            problems.append(f"[keymap] gives {binding_id!r} no key")
            continue
        mine = BY_ID[binding_id]
        for other in _active_with(mine):
            if other.id == binding_id or (other.id in keymap and other.id < binding_id):
                continue  # each pair of remapped bindings is told once
            taken = keys[binding_id] & keys[other.id]
            if taken:
                owner = "set for" if other.id in keymap else "owned by"
                problems.append(f"[keymap] {binding_id!r} = {value!r} takes {', '.join(sorted(taken))}, already "
                                f"{owner} {other.id!r} ({other.description}); choose another key")
    return problems


def _active_with(action: Action) -> Iterable[Action]:
    """The actions whose keys hold at the same time as this one's."""
    scopes = set().union(*(group for group in ACTIVE_TOGETHER if action.scope in group))
    return (a for a in ACTIONS if a.scope in scopes)
