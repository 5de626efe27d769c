"""The errors a client of the control plane sees, without the HTTP client: the TUI's screens catch them
before httpx is loaded."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """The control plane answered with an error; `message` is its readable explanation."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ControlPlaneUnreachable(ControlPlaneError):
    """Nothing answers at the control plane's URL."""

    def __init__(self, url: str, detail: str = "") -> None:
        super().__init__(
            f"No podtui control plane answers at {url}{f' ({detail})' if detail else ''}. Start one with "
            "`podtui serve` (or open `podtui`), or point --server at a running one.")
        self.url = url
