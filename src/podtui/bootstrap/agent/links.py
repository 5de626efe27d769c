"""The agent's ways to the control plane: PushLink (the agent posts to its URL), PullLink (the control plane fetches
from the pod's port), and the Reporter that sends the outbox over either, with heartbeats and backoff."""

from __future__ import annotations

import json
import math
import random
import threading
import time
import typing
import urllib.error
import urllib.request

if typing.TYPE_CHECKING:
    from .supervisor import Agent


# -- talking to the control plane ---------------------------------------------------------------------

class Gone(Exception):
    """The control plane says this run is over (or this token is no longer valid): stop."""


class PushLink:
    """Push mode's way to the control plane: `post` sends a report to its URL with the run's ingest token and
    returns the reply (Gone when the run or the token is no longer valid). PullLink stands in for it in pull mode."""

    def __init__(self, url: str, run_id: str, token: str) -> None:
        self.url = url.rstrip("/") + "/api/v1/runs/" + run_id + "/report"
        self.token = token

    def post(self, payload: dict) -> dict:
        body = json.dumps(payload, allow_nan=False).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404, 410):
                raise Gone(f"control plane answered {exc.code}") from None
            raise


MIN_REPORT_GAP_S = 0.05
"""At most 20 reports a second: what comes faster rides in the next batch."""
LIVE_ROW_GAP_S = 0.25
"""A progress row that only moved (no new line, no new point) wakes the reporter at most this often."""
MAX_SERVER_GAP_S = 10.0


class Reporter(threading.Thread):
    """Sends the outbox in order as soon as something is in it and no report is in flight, at most one report per
    MIN_REPORT_GAP_S (or the longer gap the control plane asks for when busy), so batches grow only under load;
    with nothing to send, a heartbeat every `interval` seconds."""

    def __init__(self, agent: Agent, interval: float) -> None:
        super().__init__(daemon=True, name="reporter")
        self.agent = agent
        self.interval = interval
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_ok = time.time()
        self.failures = 0
        self.server_gap = 0.0
        self.last_sent = 0.0

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.failures:
                self.stopping.wait(self.backoff())  # a full buffer does not cut a backoff short
            else:
                self.wake.wait(self.interval)
                gap = max(MIN_REPORT_GAP_S, self.server_gap) - (time.monotonic() - self.last_sent)
                if gap > 0:
                    self.stopping.wait(gap)
            self.wake.clear()
            if self.stopping.is_set():
                return
            self.last_sent = time.monotonic()
            self.flush_once()

    def backoff(self) -> float:
        return min(30.0, 0.5 * 2 ** min(self.failures, 6)) * (0.5 + random.random())

    def flush_once(self, final: dict | None = None) -> bool:
        """Send one batch (the final status rides on the last batch). True when the control plane took it."""
        agent = self.agent
        items, token = agent.outbox.peek()
        payload = {
            "metrics": [i for k, i in items if k == "m"],
            "logs": [i for k, i in items if k == "l"],
            "heartbeat_ts": time.time(),
        }
        if agent.node:
            payload["node"] = agent.node
        if agent.progress is not None:
            payload["progress"] = {"bytes_done": agent.progress[0], "bytes_total": agent.progress[1]}
        if agent.status:
            payload["status"] = agent.status
        live, source = agent.live, agent.reader.explain()
        if live != agent.live_sent:
            payload["live"] = live
        if source and source != agent.source_sent:
            payload["metrics_source"] = source
        drained = len(items) >= len(agent.outbox)
        if final and drained:
            payload.update(final)
        try:
            reply = agent.link.post(payload)
        except Gone as exc:
            agent.gone(str(exc))
            return False
        except Exception as exc:
            self.failures += 1
            if self.failures in (1, 5) or self.failures % 20 == 0:
                agent.note(f"control plane unreachable ({exc}); keeping {len(agent.outbox)} items to resend")
            if time.time() - self.last_ok > agent.unreachable_limit:
                agent.gone(f"control plane unreachable for {int(time.time() - self.last_ok)} s")
            return False
        self.failures = 0
        self.last_ok = time.time()
        agent.outbox.commit(token)
        agent.live_sent, agent.source_sent = live, source or agent.source_sent
        gap = reply.get("min_interval_s")
        busy = isinstance(gap, (int, float)) and not isinstance(gap, bool) and math.isfinite(gap)
        self.server_gap = min(MAX_SERVER_GAP_S, max(0.0, float(gap))) if busy else 0.0
        left = reply.get("deadline_in_s")
        if isinstance(left, (int, float)) and not isinstance(left, bool) and math.isfinite(left):
            agent.plane_deadline = time.time() + float(left)  # on this pod's clock, not the laptop's
        if reply.get("stop"):
            agent.gone("the control plane ended this run")
        if reply.get("sync_outputs"):
            agent.want_outputs.set()
        return bool(final) and drained

    def drain(self, final: dict, deadline: float) -> bool:
        """Send everything, then the final status; give up at the deadline."""
        while time.time() < deadline:
            if self.flush_once(final):
                return True
            if self.failures:
                time.sleep(min(self.backoff(), max(0.0, deadline - time.time())))
            if self.agent.stopped_by_control_plane:
                return False
        return False


class PullLink:
    """Stands in for the control plane's URL when the control plane pulls: `post` hands a report over and
    blocks until the control plane has fetched, stored and acknowledged it (then returns its reply), or raises
    after `timeout` (the Reporter then keeps the items and tries again, as when a push fails)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.pending: tuple | None = None
        self.acked = 0
        self.reply: dict = {}
        self.timeout = timeout

    def post(self, payload: dict) -> dict:
        body = json.dumps(payload, allow_nan=False)
        with self.cond:
            self.seq += 1
            number = self.seq
            self.pending = (number, body)
            self.cond.notify_all()
            end = time.time() + self.timeout
            while self.acked < number:
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError(f"no control plane fetched the report in {self.timeout:.0f} s")
                self.cond.wait(left)
            return self.reply

    def take(self, wait: float) -> tuple | None:
        """The report waiting to be fetched, waiting up to `wait` seconds for one."""
        end = time.time() + wait
        with self.cond:
            while self.pending is None:
                left = end - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.pending

    def ack(self, number: int, reply: dict) -> bool:
        with self.cond:
            if self.pending is None or self.pending[0] != number:
                return False
            self.acked, self.reply, self.pending = number, reply, None
            self.cond.notify_all()
            return True
