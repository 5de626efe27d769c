"""The `podtui` command. With no verb it opens the dashboard at once, without loading the command line's verbs
(click's, which import httpx and the pydantic models): those would be on the way to the dashboard's first frame.
Anything else (a verb, --help, --version, a bad option) goes to `podtui.cli`."""

from __future__ import annotations

import os
import sys

OPTIONS = {"--server": "PODTUI_SERVER", "--token": "PODTUI_ADMIN_TOKEN"}
"""The dashboard's own options (the top-level ones of `podtui.cli.main`) and their environment variables."""


def dashboard_args(args: list[str]) -> tuple[str | None, str | None] | None:
    """`--server` and `--token` (or their environment variables) when the arguments only open the dashboard;
    None when they name a verb or anything else, for click to handle."""
    values = {option: os.environ.get(env) or None for option, env in OPTIONS.items()}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        if name not in OPTIONS:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None  # click says what is missing
            value = rest.pop(0)
        values[name] = value
    return values["--server"], values["--token"]


def main() -> None:
    """The `podtui` command."""
    dashboard = dashboard_args(sys.argv[1:])
    if dashboard is None:
        from .cli import main as cli

        cli()
        return
    from .app import run_tui
    from .settings_sources import StartSettings

    # pydantic and the settings' validation load after the first frame: a setting that is wrong is said then, and
    # podtui exits as the verbs do (exit code 1, "Error: …")
    sys.exit(run_tui(StartSettings.read(), *dashboard))
