"""The Textual app: starts the embedded control plane (unless --server is given), follows the live event
stream, and shows the dashboard. The TUI is always a client of the control plane's HTTP API."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from .actions import keymap_problems, palette_actions
from .errors import ControlPlaneError, ControlPlaneUnreachable
from .fmt import format_duration
from .handler_errors import ReportsHandlerErrors, report_handler_error
from .live import Follow, LiveRuns
from .logs import setup_logging
from .messages import EndPodAsked, PlaneLinkChanged, RunEventArrived, message_for
from .plane_link import PlaneLink
from .screens.confirm import ConfirmScreen
from .screens.dashboard import Dashboard
from .screens.help import HelpScreen
from .screens.quit import QuitChoice, QuitScreen
from .settings_sources import StartSettings, config_file_path
from .stored_runs import read_runs
from .widgets.keys import bindings, help_bindings

if TYPE_CHECKING:
    from .client import Client
    from .config import Settings
    from .feed import FeedEntry
    from .models import RunEvent
    from .server.app import ControlPlane

log = logging.getLogger(__name__)


class PodtuiApp(ReportsHandlerErrors, App[int]):
    """podtui's terminal dashboard."""

    TITLE = "podtui"
    CSS_PATH = Path(__file__).with_name("podtui.tcss")  # absolute: subclasses elsewhere find it too
    BINDINGS = bindings("app")

    def __init__(self, settings: Settings | StartSettings, server: str | None = None, token: str | None = None,
                 token_given_as: str = "--token") -> None:
        super().__init__()
        self.start = settings
        """What the first frame needs (the data dir, the keymap, the log): `StartSettings`, read without pydantic,
        or the settings themselves when they are given loaded."""
        self._settings: Settings | None = None if isinstance(settings, StartSettings) else settings
        self.server = server
        self.token = token
        self.token_given_as = token_given_as
        self.plane: ControlPlane | None = None
        self.client: Client | None = None
        self.dashboard: Dashboard | None = None
        self.default_provider = settings.default_provider
        self.live = LiveRuns()
        """The runs as the control plane last said, kept current from its live feed; screens read it."""
        self.follow = Follow()
        """The runs the feed brings in full (the selected and the compared one); the rest come as summaries."""
        self.left_running = 0
        """The live pods the user chose to keep running at quit."""
        self.link: PlaneLink | None = None
        """Whether an attached control plane answers (None when embedded: it runs in this process)."""

    @property
    def settings(self) -> Settings:
        """The settings, validated: loaded right after the first frame (`connect`), or here when asked before."""
        if self._settings is None:
            from .config import load_settings

            assert isinstance(self.start, StartSettings)
            self._settings = load_settings(**self.start.overrides)
        return self._settings

    raise_handler_errors_headless = True
    """Under a test's Pilot (headless), a handler's exception still fails the test, as Textual does it."""

    def _handle_exception(self, error: Exception) -> None:
        """A handler's exception is a notification and a log entry once the app runs, never a dead TUI."""
        if not self.is_running or not self.screen_stack or \
                (self.is_headless and self.raise_handler_errors_headless):
            super()._handle_exception(error)
            return
        report_handler_error(self, error, self.start.log_file)

    @property
    def embedded(self) -> bool:
        """True when this process runs the control plane."""
        return self.plane is not None

    def get_default_screen(self) -> Screen[Any]:
        """The dashboard is the first screen (no blank default screen painted and replaced), with this machine's
        runs read straight from its store (read-only) on its first frame, before the control plane has started."""
        if self.server is None:
            self.live.load_stored(read_runs(self.start.store_path))
        self.dashboard = Dashboard(self.live, self.follow, self.default_provider, "starting the control plane…"
                                   if self.server is None else f"connecting to {self.server}…")
        return self.dashboard

    def on_mount(self) -> None:
        if self.start.keymap:
            self.set_keymap(self.start.keymap)
        # The dashboard paints first; the control plane starts (or is reached) right after, in a worker.
        self.call_after_refresh(self.connect)

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self) -> None:
        """Load the settings, start the embedded control plane (or reach --server), then feed the dashboard."""
        try:
            await asyncio.to_thread(lambda: self.settings)  # pydantic: after the first frame
        except ValueError as exc:  # a broken config.toml or variable: said as the command line says it
            from rich.text import Text  # Textual prints it on stderr at exit, lines whole as the verbs print them

            self.exit(1, return_code=1, message=Text(f"Error: {exc}", no_wrap=True, overflow="ignore"))
            return
        from .config import resolve_admin_token

        url = self.server
        # one resolution for the dashboard and every CLI verb: --token, PODTUI_ADMIN_TOKEN, config, the token file
        token, token_source = resolve_admin_token(self.settings, self.token, self.token_given_as)
        if url is None and await self._port_answers():
            url = self._attach_local()
        elif url is None:
            # The server stack (aiohttp, aiosqlite) loads only when embedded, in a thread: the dashboard stays live.
            server_app = await asyncio.to_thread(importlib.import_module, "podtui.server.app")
            plane = self.plane = server_app.ControlPlane(self.settings)  # set first: quitting now still stops it
            try:
                await plane.start()
                server_app.tune_gc()
                url, token, token_source = plane.url, plane.admin_token, "the embedded control plane"
            except OSError:
                self.plane = None
                url = self._attach_local()
            else:
                # The runs are in this process already: show them before the HTTP client has even loaded.
                self.live.load(await plane.store.list_runs())
                if self.dashboard is not None:
                    self.dashboard.show_runs()
        client_module = await asyncio.to_thread(importlib.import_module, "podtui.client")  # httpx: not at start
        try:
            self.client = client_module.Client(url, token, token_source=token_source)
        except ControlPlaneError as exc:  # --server that is not a URL
            self.notify(exc.message, severity="error", timeout=60)
            return
        if not self.embedded:
            self.link = PlaneLink(url)
        try:
            await self.client.health()
        except ControlPlaneError as exc:
            if self.link is not None and isinstance(exc, ControlPlaneUnreachable):
                self.link.failed(time.time())  # the status line says it, and the feed retries with backoff
                self.notify(f"{exc.message} podtui keeps trying.", severity="warning", timeout=10)
            else:
                self.notify(exc.message, severity="error", timeout=20)
        assert self.dashboard is not None
        self.dashboard.attach(self.client, self.status_line(url))
        if self.link is not None and not self.link.reachable:
            self.dashboard.show_link(self.status_line(url), reachable=False)
        self.follow_events()
        # Later, so that asking RunPod (and importing its SDK) never slows the start.
        self.set_timer(15.0, self.check_orphans)

    @work(exclusive=True, group="orphans", exit_on_error=False)
    async def check_orphans(self) -> None:
        """Warn about pods named like podtui's that no run knows (they bill unseen)."""
        assert self.client is not None
        try:
            orphans = await self.client.orphans()
        except ControlPlaneError as exc:
            self.notify(f"could not check for orphan pods: {exc.message}", severity="warning")
            return
        if orphans:
            self.notify(f"{len(orphans)} pod(s) named podtui-* belong to no run and may be billing: "
                        f"{', '.join(o.pod_id for o in orphans[:3])}. `podtui orphans --terminate` ends them.",
                        severity="error", timeout=30)

    async def _port_answers(self) -> bool:
        """Whether something listens on the control plane's port already (a `podtui serve`, e.g. one kept in the
        background): then attach to it, without loading the server stack at all."""
        if not self.settings.port:
            return False
        try:
            host = urlsplit(self.settings.local_url).hostname or "127.0.0.1"
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, self.settings.port), 0.5)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def _attach_local(self) -> str:
        """The URL of the control plane already on this machine's port."""
        url = self.settings.local_url
        self.notify(f"Port {self.settings.port} is busy: attached to the control plane already running at {url} (a "
                    "`podtui serve`, e.g. one kept in the background). Set PODTUI_PORT to run a separate one.",
                    timeout=8)
        return url

    def status_line(self, url: str) -> str:
        """Provider, where pods reach the control plane, and what is wrong with that."""
        where = "embedded control plane" if self.embedded else \
            self.link.describe() if self.link is not None else f"control plane {url}"
        parts = [f"provider {self.default_provider}", where]
        if not self.embedded:  # unreachable: said first, so a narrow status line cuts the provider, not the time
            return " · ".join(parts if self.link is None or self.link.reachable else parts[::-1])
        from .config import public_url_problem

        if not self.settings.runpod_api_key:
            parts.append("no RunPod key: local pods only")
        elif self.settings.default_connect("runpod") == "pull":
            parts.append("RunPod pods: pull (podtui reaches them through RunPod's proxy; no public https URL set)")
        else:
            parts.append(f"RunPod pods: push to {self.settings.public_url}")
            if public_url_problem(self.settings.public_url, "runpod", self.settings.allow_loopback_public_url):
                parts.append("⚠ public URL unusable for RunPod pods")
            elif (self.settings.public_url or "").startswith("http://"):
                parts.append("⚠ plain http: tokens travel in clear")
        return " · ".join(parts)

    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_events(self) -> None:
        """Apply the control plane's live feed to the app's runs, then tell the screens (reconnects by itself)."""
        assert self.client is not None
        try:
            async for _, entry in self.client.events(follow=self.follow, link=self.link, on_link=self.link_changed):
                self.take_entry(entry)
        except ControlPlaneError as exc:  # refused (a wrong admin token): the live feed cannot go on
            self.notify(f"the live feed stopped: {exc.message}", severity="error", timeout=60)
            if self.dashboard is not None:
                self.dashboard.show_link(f"⚠ control plane {self.client.url} refused this dashboard: "
                                         f"{exc.message}", reachable=False)

    def link_changed(self, reachable: bool) -> None:
        """An attached control plane stopped answering, or answers again: say so, grey or refresh the figures."""
        if self.dashboard is None or self.client is None:
            return
        self.dashboard.show_link(self.status_line(self.client.url), reachable)
        if reachable:
            self.dashboard.load_runs()  # the feed resumes gap-free; this brings what came before its first entry
            self.notify(f"the control plane at {self.client.url} answers again")
        for screen in self.screen_stack:
            screen.post_message(PlaneLinkChanged(reachable))

    def take_entry(self, entry: FeedEntry) -> None:
        """One live feed entry: into the app's runs first, then to every screen on the stack."""
        self.live.apply(entry)
        told = None
        for screen in self.screen_stack:  # a message each: a message is handled by one pump
            screen.post_message(told := message_for(entry))
        if isinstance(told, RunEventArrived):
            self.tell_event(told.event)

    def tell_event(self, event: RunEvent) -> None:
        """A run's failures, its end and its pod's troubles as notifications, on whichever screen is open."""
        first = event.message.splitlines()[0] if event.message else ""
        name = self.live.name_of(event.run_id)
        if event.kind in ("attempt_failed", "terminate_failed"):
            self.notify(f"{name}: {first}", severity="warning", timeout=8)
        elif event.kind in ("attempt_lost", "resumed"):  # the run goes on on a new pod (--retries)
            self.notify(f"{name}: {first}", severity="warning" if event.kind == "attempt_lost" else "information",
                        timeout=10)
        elif event.kind == "pod_end_failed":  # it bills until podtui ends it
            self.notify(f"{name}: {first}", severity="error", timeout=30)
        elif event.kind in ("failed", "lost"):
            self.notify(f"{name} {event.kind}: {first}", severity="error", timeout=15)
        elif event.kind in ("succeeded", "terminated"):
            self.notify(f"{name} {event.kind}: {first}", timeout=8)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.dashboard is None:
            return
        for action in palette_actions():  # the dashboard's and its panel's, from the action table
            holder = self.dashboard.panel if action.scope == "panel" else self.dashboard
            yield SystemCommand(action.command or action.id, action.tooltip, getattr(holder, f"action_{action.action}"))

    def action_help(self) -> None:
        """Show every key (the run detail's and the launch form's own ones too), as [keymap] sets them."""
        self.push_screen(HelpScreen(help_bindings(self.start.keymap)))

    async def action_quit(self) -> None:
        """Textual's own quit (the command palette's "Quit") asks like `q` when pods still run."""
        self.action_quit_guarded()

    def action_quit_guarded(self) -> None:
        """Quit; with live pods, ask whether to terminate them, keep them, or stay. Attached to a control plane
        elsewhere, its runs are asked for first: what the dashboard last heard may be stale (it said "1 pod keeps
        running" with none)."""
        if not self.embedded and self.client is not None:
            self.refresh_then_quit()
            return
        self._quit_asking()

    @work(exclusive=True, group="quit-refresh", exit_on_error=False)
    async def refresh_then_quit(self) -> None:
        """The attached control plane's runs as they are now (at most 5 s), then quit as `q` does."""
        assert self.client is not None
        try:
            runs = await asyncio.wait_for(self.client.runs(), 5.0)
        except (ControlPlaneError, TimeoutError):
            pass  # unreachable: what it last said is all there is
        else:
            for run in runs:
                self.live.put(run)
        self._quit_asking()

    def _quit_asking(self) -> None:
        live = self.live.pods_in_use()
        if not live:
            self.exit(0)
            return

        def chosen(choice: QuitChoice | None) -> None:
            if choice == "terminate":
                self.terminate_all_and_exit([r.id for r in live])
            elif choice == "keep":
                self.left_running = len(live)
                self.exit(0)
            elif choice == "background":
                self.exit(BACKGROUND)

        self.push_screen(QuitScreen(len(live), self.embedded, any(r.provider != "local" for r in live),
                                    self.settings.pod_undelivered_keep_s), chosen)

    def on_end_pod_asked(self, message: EndPodAsked) -> None:
        """A screen asks to terminate (or stop) a run's pod."""
        self._end_asking(message.run_id, stop=message.stopping, ask=message.ask)

    def _end_asking(self, run_id: str, stop: bool, ask: bool) -> None:
        run = self.live.get(run_id)
        if run is None:
            self.notify("no such run", severity="warning")
            return
        if stop and not run.status.is_live:
            self.notify(f"{run.name} has ended ({run.status.value}): there is nothing to stop", severity="warning")
            return
        if not ask:
            self.end_pod(run.id, stop)
            return
        # Outputs can still be lost while the run lives, or while its pod stays to bring them home (keep-alive).
        lost = "Outputs not home yet are lost: `o` in the run detail brings them home first." \
            if run.pod_in_use(time.time()) else ""
        if stop:
            question, yes = f"Stop [b]{run.name}[/b]? Its pod stops and GPU billing ends. {lost}", "Stop"
        else:
            question = (f"Terminate [b]{run.name}[/b] ({run.status.value}, {run.gpu_type or 'no pod yet'})?\n"
                        f"Its pod ends and stops billing. {lost}")
            yes = "Terminate"

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.end_pod(run.id, stop)

        self.push_screen(ConfirmScreen(question, yes=yes), answered)

    @work(group="terminate", exit_on_error=False)
    async def end_pod(self, run_id: str, stop: bool) -> None:
        """Ask the control plane to terminate (or stop) a run's pod."""
        if self.client is None:
            self.notify("the control plane is still starting", severity="warning")
            return
        try:
            run = await (self.client.stop(run_id) if stop else self.client.terminate(run_id))
        except ControlPlaneError as exc:
            self.notify(exc.message, severity="error", timeout=15)
            return
        self.live.put(run)

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def terminate_all_and_exit(self, run_ids: list[str]) -> None:
        """Terminate every live run, then quit; stay (with the errors) when one fails."""
        if self.client is None:  # the live runs were read from the store at start
            self.notify("the control plane is still starting: podtui stays open; quit again once it answers",
                        severity="warning", timeout=10)
            return
        failed = []
        for run_id in run_ids:
            try:
                await self.client.terminate(run_id)
            except ControlPlaneError as exc:
                failed.append(f"{run_id}: {exc.message}")
        if failed:
            self.notify("Not all pods could be terminated; podtui stays open:\n" + "\n".join(failed),
                        severity="error", timeout=30)
            return
        self.exit(0)

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "connect")
        if self.client is not None:
            await self.client.close()
        if self.plane is not None:
            await self.plane.stop()


def run_tui(settings: Settings | StartSettings, server: str | None, token: str | None,
            token_given_as: str = "--token") -> int:
    """Run the app; the log goes to the data dir's log file, never onto the screen. A [keymap] that names no
    binding, or takes a key another binding owns, is refused before the screen opens."""
    if problems := keymap_problems(settings.keymap):
        print(f"podtui does not start: {config_file_path()}:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    setup_logging(settings.log_file, settings.log_level, stderr=False)
    app = PodtuiApp(settings, server, token, token_given_as)
    result = app.run()
    if result == BACKGROUND:  # the embedded control plane has stopped: a headless one takes over its port
        return serve_in_background(app.settings)
    note = exit_note(app)
    if note:
        print(note)
    return int(result or 0)


def exit_note(app: PodtuiApp) -> str | None:
    """What the user is told after quitting: the pods kept running, and, attached, the control plane left
    running elsewhere (quitting an attached dashboard said nothing of it)."""
    parts = []
    if app.left_running:
        parts.append(kept_running_note(app.left_running, app.embedded, app.settings.pod_undelivered_keep_s))
    if not app.embedded and app.client is not None:
        url = app.client.url
        stop = ""
        pid_file = app.settings.data_dir / "serve.pid"
        if url.rstrip("/") == app.settings.local_url and pid_file.is_file():
            stop = f"; `kill {pid_file.read_text().strip()}` stops it"
        parts.append(f"The control plane at {url} keeps running (a `podtui serve`: it goes on supervising the "
                     f"pods and enforcing their limits); `podtui --server {url}` attaches again{stop}.")
    return "\n".join(parts) or None


def kept_running_note(pods: int, embedded: bool, wait_s: float) -> str:
    """What the user is told after quitting with pods kept running."""
    one = pods == 1
    many = f"{pods} pod{'' if one else 's'} keep{'s' if one else ''} running"
    if not embedded:
        return f"{many}, supervised by the control plane podtui was attached to."
    its, it = ("its", "it") if one else ("their", "them")
    return (f"{many}{'' if one else ', each'} within {its} own limits (max runtime, budget, stalls), keeping {its} "
            f"reports; nothing supervises {it} until `podtui` or `podtui serve` starts again. Start it within "
            f"{format_duration(wait_s)} of a command's end, or that run's outputs are lost with its pod.")


BACKGROUND = 10
"""The app's result when the user quits keeping the control plane in the background."""


def serve_in_background(settings: Settings) -> int:
    """Start `podtui serve` detached on this control plane's port (the next `podtui` attaches to it)."""
    import urllib.request  # http.client and email: only when quitting this way

    env = dict(os.environ, PODTUI_DATA_DIR=str(settings.data_dir), PODTUI_HOST=settings.host,
               PODTUI_PORT=str(settings.port))
    if settings.public_url:
        env["PODTUI_PUBLIC_URL"] = settings.public_url
    log_path = settings.data_dir / "serve.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "podtui.cli", "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (settings.data_dir / "serve.pid").write_text(f"{proc.pid}\n")
    for _ in range(100):  # say it runs only once it answers
        try:
            with urllib.request.urlopen(f"{settings.local_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    else:
        proc.poll()
    if proc.returncode is not None:
        print(f"podtui serve did not start (exit code {proc.returncode}); see {log_path}. Pods keep their own "
              "limits; start `podtui` or `podtui serve` to supervise them.", file=sys.stderr)
        return 1
    print(f"podtui's control plane keeps running in the background (pid {proc.pid}, log {log_path}); "
          f"`podtui` attaches to it, `kill {proc.pid}` stops it (pods keep their own limits).")
    return 0

