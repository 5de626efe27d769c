"""Whether an attached dashboard's control plane answers: since when it does not, and how long to wait before the
next try (backoff). Pure logic, no textual: the app feeds it the live feed's connection changes."""

from __future__ import annotations

import time

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 15.0


class PlaneLink:
    """The link to one control plane, as the dashboard's status line says it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.down_since: float | None = None
        """When the control plane stopped answering (None: it answers, or has not been tried yet)."""
        self.failures = 0
        """Connection attempts that failed in a row."""
        self._dropped_at: float | None = None

    @property
    def reachable(self) -> bool:
        return self.down_since is None

    def dropped(self, now: float) -> None:
        """The live feed ended: unreachable from now if the next connection fails too (a restart reconnects)."""
        self._dropped_at = now

    def failed(self, now: float) -> bool:
        """A connection failed; True when that makes the control plane unreachable (it answered before)."""
        self.failures += 1
        if self.down_since is not None:
            return False
        self.down_since = self._dropped_at if self._dropped_at is not None else now
        return True

    def answered(self) -> bool:
        """A connection worked; True when the control plane was unreachable until now."""
        was_down = self.down_since is not None
        self.down_since = self._dropped_at = None
        self.failures = 0
        return was_down

    def retry_delay(self) -> float:
        """How long to wait before the next try: doubling from half a second, at most 15 s."""
        if self.failures == 0:
            return RETRY_FIRST_S
        return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self.failures - 1))

    def describe(self, stale: str = "figures as it last said") -> str:
        """The status line's words (`stale`: what the user sees that is no longer current)."""
        if self.down_since is None:
            return f"control plane {self.url}"
        since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
        return f"⚠ control plane unreachable since {since}, retrying ({self.url}{'; ' + stale if stale else ''})"
