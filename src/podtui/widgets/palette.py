"""Colours from the app's theme: run statuses, event kinds and chart series take Textual's theme variables, so
`ctrl+p` → theme changes them. Widgets that bake colours into rich Text redraw on `app.theme_changed_signal`."""

from __future__ import annotations

from textual.app import App
from textual.color import Color, ColorParseError

from ..wording import POD_END_FAILED_LABEL

STATUS_LOOK = {  # a run status label (wording.status_label) -> (theme variable, bold)
    "pending": ("foreground-muted", False), "provisioning": ("text-warning", False),
    "booting": ("text-warning", False), "downloading": ("text-primary", False), "training": ("text-success", True),
    "succeeded": ("text-success", False), "failed": ("text-error", True), "terminated": ("text-secondary", False),
    "lost": ("text-error", False), POD_END_FAILED_LABEL: ("text-error", True),
}
EVENT_LOOK = {  # run event kind -> (theme variable, bold)
    "attempt_failed": ("text-warning", False), "terminate_failed": ("text-error", True),
    "failed": ("text-error", True), "lost": ("text-error", False), "budget_warning": ("text-warning", False),
    "gpu_util_low": ("text-warning", False), "succeeded": ("text-success", False),
    "terminated": ("text-secondary", False), "pod_end_failed": ("text-error", True),
    "attempt_lost": ("text-warning", True), "resumed": ("text-success", True),
}
SERIES_VARIABLES = ("text-primary", "text-warning", "text-success", "text-secondary", "text-error")
"""The chart's series colours, in order."""
COMPARE_VARIABLE = "foreground-muted"
LR_VARIABLE = "text-accent"


def theme_colour(app: App[object], variable: str) -> str:
    """A theme variable as an opaque #rrggbb, a translucent one (`foreground-muted`) blended over the background as
    the screen shows it; empty when the theme lacks it (rich then uses the default colour)."""
    variables = app.theme_variables
    try:
        return (Color.parse(variables.get("background", "black")) + Color.parse(variables.get(variable, ""))).hex6
    except ColorParseError:
        return ""


def _style(app: App[object], look: tuple[str, bool] | None) -> str:
    if look is None:
        return ""
    variable, bold = look
    return f"{'bold ' if bold else ''}{theme_colour(app, variable)}".strip()


def status_style(app: App[object], status: str) -> str:
    """The rich style of a run status."""
    return _style(app, STATUS_LOOK.get(status))


def event_style(app: App[object], kind: str) -> str:
    """The rich style of a run event's kind."""
    return _style(app, EVENT_LOOK.get(kind))
