"""An exception in one of the TUI's handlers (a key's action, a message handler, a timer) is a notification and a
log entry, never a dead TUI.

Textual ends the app on any unhandled exception, and the message loop that raised stops reading messages. The
app's `_handle_exception` (Textual's one hook for it) reports instead; the screens and the app guard their own
message loops with `ReportsHandlerErrors`, so the loop goes on with the next message."""

from __future__ import annotations

import logging
import time
from typing import Any

from textual.app import App
from textual.message import Message
from textual.worker import Worker, WorkerState

from .tokens import mask_secrets

log = logging.getLogger("podtui.tui")


REPEAT_QUIET_S = 30.0
"""The same error again within this long is neither notified nor logged with its traceback again (a failing timer
or render would flood the screen and the log)."""
_last_told: dict[str, float] = {}


def report_handler_error(app: App[Any], error: BaseException, log_file: object) -> None:
    """Log the traceback (secrets masked) and tell the user in one notification (once per REPEAT_QUIET_S for the
    same error)."""
    what = mask_secrets(f"{type(error).__name__}: {error}")[:300]
    now = time.monotonic()
    if now - _last_told.get(what, -REPEAT_QUIET_S) < REPEAT_QUIET_S:
        log.debug("the same TUI error again: %s", what)  # one traceback per 30 s: a failing render would fill the log
        return
    _last_told[what] = now
    log.error("a TUI handler failed; the app goes on", exc_info=error)
    app.notify(f"podtui hit an unexpected error ({what}). The dashboard goes on; the details are in {log_file}.",
               severity="error", timeout=20)


class ReportsHandlerErrors:
    """Mixin (before Textual's class) for the app and the screens: a handler's exception goes to the app's
    `_handle_exception` and this message loop reads on; a worker's unexpected exception (workers run with
    exit_on_error=False, which dropped it silently) is reported the same way."""

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except Exception as error:  # reported; the loop goes on
            self.app._handle_exception(error)  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            app = self.app  # type: ignore[attr-defined]
            log_file = getattr(getattr(app, "settings", None), "log_file", "podtui's log file")
            report_handler_error(app, event.worker.error, log_file)
