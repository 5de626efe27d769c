"""The Agent: runs the command, enforces the pod's own limits (max runtime, budget deadline, stall), stops it when
the control plane or a signal says so, reports the end and brings the outputs home, then ends the pod."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing

from .links import PullLink, PushLink, Reporter
from .metrics import MetricReader
from .nodes import NODE_SEQ_STRIDE, cluster_env, count_of, node_rank_of
from .outbox import Outbox
from .outputs import OutputSender, scan_outputs
from .pod_end import PodEnd
from .reading import CommandOutput
from .terminal import Output

TAIL_LINES = 50


# -- the agent ----------------------------------------------------------------------------------------

class Agent(CommandOutput, PodEnd):
    """The command under supervision on its pod: its output read into reports (CommandOutput), its limits, its end
    and its outputs, and the pod's own end (PodEnd)."""

    def __init__(self, command: list, env: typing.Mapping[str, str] | None = None,
                 link: PullLink | None = None) -> None:
        env = os.environ if env is None else env
        self.command = command
        self.home = env.get("PODTUI_HOME") or os.path.join(os.path.expanduser("~"), "podtui")
        os.makedirs(self.home, exist_ok=True)
        self.link: typing.Any = link or PushLink(env["PODTUI_URL"], env["PODTUI_RUN_ID"], env["PODTUI_TOKEN"])
        self.keep_alive = float(env.get("PODTUI_KEEP_ALIVE_S") or 0)
        self.terminate_cmd = env.get("PODTUI_TERMINATE_CMD", "")
        self.runpod_api = env.get("PODTUI_RUNPOD_API_URL", "")
        self.runpod_pod = env.get("RUNPOD_POD_ID", "")
        self.runpod_key = env.get("RUNPOD_API_KEY", "")
        self.end_proof = float(env.get("PODTUI_END_PROOF_S") or 120)
        """How long after asking RunPod to end the pod this process may still run before the end counts as failed."""
        self.unreachable_limit = float(env.get("PODTUI_UNREACHABLE_LIMIT_S") or 12 * 3600)
        self.undelivered_keep = float(env.get("PODTUI_UNDELIVERED_KEEP_S") or 1800)
        self.started = time.time()
        runtime = float(env.get("PODTUI_MAX_RUNTIME_S") or 0)
        self.runtime_deadline = self.started + runtime if runtime > 0 else None
        self.plane_deadline: float | None = None
        self.stall_limit = float(env.get("PODTUI_STALL_TIMEOUT_S") or 0)
        # A connected control plane acts on the same limits first (and says why); the pod acts this much later.
        self.limit_grace = float(env.get("PODTUI_LIMIT_GRACE_S") or 0)
        self.last_line_at = time.time()
        self.grace = float(env.get("PODTUI_GRACE_S") or 20)
        self.metrics_file = env.get("PODTUI_METRICS_FILE") or os.path.join(self.home, "metrics.jsonl")
        self.outbox = Outbox(os.path.join(self.home, "outbox.spill"))
        self.reporter = Reporter(self, float(env.get("PODTUI_REPORT_INTERVAL_S") or 1.0))
        self.seq_lock = threading.Lock()
        self.node = node_rank_of(env)
        self.seq = self.node * NODE_SEQ_STRIDE
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        # A run's metrics are node 0's (add_points drops the others'): node k > 0 does not parse its lines for them.
        self.reader = MetricReader("off" if self.node else env.get("PODTUI_METRICS") or "auto",
                                   env.get("PODTUI_METRICS_RANKS") or "0")
        self.outputs = {"stdout": Output(), "stderr": Output()}
        self.output_lock = threading.Lock()
        self.live: list = []  # the progress rows being drawn now, as sent last
        self.live_sent: list | None = None
        self.live_woke = 0.0
        self.source_sent = ""
        self.file_state: dict = {}
        self.status: str | None = None
        self.progress: tuple | None = None
        self.child: subprocess.Popen | None = None
        self.stopped_by_control_plane = False
        self.stopped_by_pod = ""
        self.signalled = False
        self.stop_reason = ""
        # Outputs: $PODTUI_OUTPUT_DIR for the command, brought home at the end, on request and every N s.
        work = os.path.join(self.home, "work")
        rel = os.path.normpath(env.get("PODTUI_OUTPUTS") or "outputs").lstrip("/")
        self.output_dir = os.path.join(work, "outputs" if rel.startswith("..") or rel == "." else rel)
        self.sync_every = float(env.get("PODTUI_SYNC_OUTPUTS_S") or 0)
        self.want_outputs = threading.Event()
        self.outputs_done = threading.Event()
        """Pull mode: the control plane says the final sync is home (POST /v1/outputs/done)."""
        self.sender: OutputSender | None = None
        from_all = (env.get("PODTUI_OUTPUTS_FROM") or "0") == "all"
        several = count_of(env.get("PODTUI_NODES") or env.get("NUM_NODES")) > 1
        self.output_prefix = f"node{self.node}/" if from_all and several else ""
        self.outputs_wanted = self.node == 0 or from_all  # outputs come from node 0 unless asked for all
        # --outputs-on-volume: the command writes them straight to the volume, where they stay (nothing moves);
        # node k > 0 of a run whose outputs are node 0's keeps its own folder (no two nodes write one file).
        self.outputs_on_volume = ""
        if env.get("PODTUI_VOLUME_OUTPUTS") and self.outputs_wanted:
            self.outputs_on_volume = os.path.join(env["PODTUI_VOLUME_OUTPUTS"], self.output_prefix)
            self.output_dir = self.outputs_on_volume.rstrip("/")
            self.outputs_wanted = False
        if link is None and self.outputs_wanted:
            self.sender = OutputSender(self, env["PODTUI_URL"], env["PODTUI_RUN_ID"], env["PODTUI_TOKEN"])

    # life and death (the reading: reading.py; the pod's end: pod_end.py)
    def gone(self, reason: str) -> None:
        """The control plane ended the run, or cannot be reached for too long: stop the command."""
        if self.stopped_by_control_plane:
            return
        self.stopped_by_control_plane = True
        self.stop_reason = reason
        self.stop_child()

    def stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except OSError:
            pass

        def kill_later() -> None:
            try:
                child.wait(self.grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass

        threading.Thread(target=kill_later, daemon=True).start()

    def guard_reason(self, now: float) -> str | None:
        """Why the pod must end the command now on its own (it does not wait for the control plane, which
        may be a laptop that sleeps): the run's max runtime, its budget's deadline, or a stall."""
        now -= self.limit_grace
        if self.runtime_deadline is not None and now >= self.runtime_deadline:
            return "max runtime reached"
        if self.plane_deadline is not None and now >= self.plane_deadline:
            return "the run's time or budget limit reached"
        # Node k > 0 of a run (its ranks often print nothing) is never stalled alone: node 0 watches the run's
        # output here, and the control plane every node's.
        if self.stall_limit > 0 and not self.node and self.status == "training" and \
                now - self.last_line_at >= self.stall_limit:
            return f"stalled: no output for {int(now - self.last_line_at)} s"
        return None

    def watch(self, done: threading.Event) -> None:
        while not done.wait(1.0):
            for stream in self.outputs:
                self.output(stream, None, time.time())
            reason = self.guard_reason(time.time())
            if reason and not self.stopped_by_pod:
                self.stopped_by_pod = reason
                self.note(f"ending the command: {reason} (enforced by the pod)")
                self.stop_child()

    def on_signal(self, signum: int, frame: object) -> None:
        self.note(f"received signal {signum}; stopping the command (grace {self.grace:.0f} s)")
        self.signalled = True  # the pod is being stopped: the last report must go out within the grace
        self.stop_child()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.reporter.start()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PODTUI_METRICS_FILE=self.metrics_file,
                   PODTUI_OUTPUT_DIR=self.output_dir)
        env.update(cluster_env(env))
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as exc:
            self.note(f"cannot create the outputs folder {self.output_dir}: {exc}")
        try:
            child = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as exc:
            self.note(f"cannot start {self.command!r}: {exc}")
            return self.finish(127)
        self.child = child
        with open(os.path.join(self.home, "agent.json"), "w") as f:
            json.dump({"agent_pid": os.getpid(), "child_pgid": child.pid}, f)
        done = threading.Event()
        pumps = [threading.Thread(target=self.pump, args=(child.stdout, "stdout"), daemon=True),
                 threading.Thread(target=self.pump, args=(child.stderr, "stderr"), daemon=True),
                 threading.Thread(target=self.tail_metrics_file, args=(done,), daemon=True)]
        for t in pumps:
            t.start()
        threading.Thread(target=self.watch, args=(done,), daemon=True, name="watchdog").start()
        threading.Thread(target=self.sync_while_running, args=(done,), daemon=True, name="outputs").start()
        code = child.wait()
        for t in pumps[:2]:
            t.join(10)
        with self.output_lock, self.seq_lock:  # what the trainer printed last has no bar left to wait for
            self.add_points(self.reader.overdue(time.time(), 0.0), time.time())
            self.live = []
        done.set()
        pumps[2].join(5)
        return self.finish(code)

    def finish(self, code: int) -> int:
        self.reporter.stopping.set()
        self.reporter.wake.set()
        self.reporter.join(30)
        if self.stopped_by_control_plane:
            self.note(f"stopped: {self.stop_reason}")
            self.reporter.drain({}, time.time() + min(10.0, self.unreachable_limit))
            self.terminate_pod()
            return code or 1
        if self.stopped_by_pod:
            final = {"status": "failed", "exit_code": code if -255 <= code <= 255 and code else 1,
                     "stopped": self.stopped_by_pod[:300],
                     "error": f"exit code {code}; last lines:\n" + "\n".join(self.tail)}
        elif code == 0:
            final = {"status": "succeeded", "exit_code": 0}
            self.note("command succeeded")
        else:
            final = {"status": "failed", "exit_code": code if -255 <= code <= 255 else 1,
                     "error": f"exit code {code}; last lines:\n" + "\n".join(self.tail)}
            self.note(f"command failed with exit code {code}")
        self.status = None
        if self.outputs_on_volume:  # said before the final report, so it arrives whatever the keep-alive
            files, _ = scan_outputs(self.output_dir)
            self.note(f"outputs stay on the volume: {len(files)} file(s), {sum(f[2] for f in files)} bytes in "
                      f"{self.output_dir}")
        # Everything is delivered, then the pod ends; undelivered, it waits at most undelivered_keep for the
        # control plane (a laptop that sleeps) and ends all the same.
        # A pod past its own limit does not bill another half hour for a report: a minute at most.
        patience = min(10.0, self.grace) if self.signalled else self.undelivered_keep
        if self.signalled and isinstance(self.link, PullLink):
            self.link.timeout = min(self.link.timeout, 5.0)
        if self.stopped_by_pod:
            patience = min(patience, 60.0)
        ended = time.time()
        delivered = self.reporter.drain(final, ended + patience)
        # The keep-alive counts from the command's end, not after a long wait to deliver: a pod whose control
        # plane is away bills the longer of the two, never their sum.
        until = ended + self.keep_alive
        if self.keep_alive > 0 and not (self.stopped_by_control_plane or self.stopped_by_pod or self.signalled):
            if delivered and time.time() < until:
                self.bring_outputs_home(until)
            elif not delivered:
                print("podtui agent: the final report was not delivered; the outputs stay in the pod",
                      file=sys.stderr)
        self.terminate_pod()
        return code

    # outputs
    def sync_while_running(self, done: threading.Event) -> None:
        """Push mode: a sync every PODTUI_SYNC_OUTPUTS_S and whenever the control plane asks, while the command
        runs (the final one is in finish)."""
        if self.sender is None:
            return
        last = time.time()
        while not done.is_set():
            self.want_outputs.wait(1.0)
            due = self.sync_every > 0 and time.time() - last >= self.sync_every
            if done.is_set() or not (self.want_outputs.is_set() or due):
                continue
            self.want_outputs.clear()
            last = time.time()
            try:
                sent, failed = self.sender.sync(False, time.time() + 600, stop=done)
                if sent or failed:
                    self.note(f"outputs sync: {sent} file(s) sent" + (f", {failed} not" if failed else ""))
            except Exception as exc:  # a sync must never take the run down
                self.note(f"outputs sync failed: {exc}")

    def bring_outputs_home(self, until: float) -> None:
        """After the command: the final sync (push), or wait for the control plane's (pull); the keep-alive
        bounds it, and the pod ends as soon as it is complete."""
        if not self.outputs_wanted:
            return  # they stay on the volume (said before the final report), or node 0 brings the run's home
        files, refused = scan_outputs(self.output_dir)
        if not files and not refused:
            return  # nothing to bring home: the pod ends at once, as it always did
        if self.sender is not None:
            self.sender.bound(until)  # a periodic pass under way ends by then (and starts no new file)
            try:
                sent, failed = self.sender.sync(True, until)
            except Exception as exc:
                self.note(f"final outputs sync failed: {exc}")
                return
            self.note(f"outputs home: {sent} file(s) sent" + (f"; {failed} not brought home" if failed else "")
                      + "; ending the pod")
        else:
            self.note(f"waiting at most {until - time.time():.0f} s (keep-alive) for the control plane to fetch "
                      "the outputs")
            while not self.outputs_done.wait(min(1.0, max(0.0, until - time.time()))):
                if self.signalled or time.time() >= until:  # a stop's SIGTERM ends the wait at once
                    break
            if self.outputs_done.is_set():
                self.note("the control plane has the outputs; ending the pod")
            else:
                self.note("the outputs were not all fetched (keep-alive over, or the pod is being stopped); "
                          "ending the pod")
        self.send_notes(min(until, time.time() + 10))

    def send_notes(self, deadline: float) -> None:
        """Deliver the lines still in the outbox (the reporter has stopped), until the deadline."""
        while len(self.outbox) and time.time() < deadline:
            self.reporter.flush_once()
            if self.reporter.failures:
                time.sleep(min(1.0, max(0.0, deadline - time.time())))
