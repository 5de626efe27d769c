"""The local provider: a "pod" is a process group on this machine running the same boot command and start
script a RunPod pod runs, in its own folder under the data dir. No GPU, no cost: for trying podtui and for tests.

A pod's folder keeps pod.json (pid and process start time), so pods that outlive a control plane restart are
found again, never forgotten.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..models import GpuOffer, LaunchSpec
from .base import AttemptCallback, LaunchAttempt, NodeState, Pod, PodRequest, PodState, ProviderError

LOCAL_GPU = "local"
_DROPPED_ENV = ("RUNPOD_API_KEY", "PODTUI_ADMIN_TOKEN", "PODTUI_RUNPOD_API_KEY",
                # the control plane's data-source credentials: a pod gets presigned URLs, as a RunPod pod would
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "HF_TOKEN")


def process_start_time(pid: int) -> str | None:
    """An identity for a live process (Linux: its start time in ticks), so a reused pid is not mistaken."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has ended
    except (OSError, IndexError):
        return None if not _alive(pid) else "unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def free_local_port() -> int:
    """A TCP port free on 127.0.0.1 now (node 0's rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalProvider:
    """Pods as local process groups."""

    name = "local"
    self_terminate_command = ""

    def __init__(self, pods_dir: Path, grace_s: float = 15.0, price_per_hour: float = 0.0) -> None:
        self.pods_dir = pods_dir
        self.grace_s = grace_s
        self.price_per_hour = price_per_hour
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    async def list_offers(self, refresh: bool = False, cloud: str = "SECURE", count: int = 1) -> list[GpuOffer]:
        """One offer: this machine's CPU (free unless a rehearsal price is set)."""
        price = self.price_per_hour
        return [GpuOffer(id=LOCAL_GPU, name=f"This machine (CPU x{os.cpu_count() or 1}, no GPU)",
                         provider=self.name, vram_gb=None, secure_price=price, community_price=price,
                         spot_price=price, stock="High", max_gpu_count=1)]

    async def check_spec(self, spec: LaunchSpec) -> list[str]:
        """What a local pod cannot be (the launch is refused with it, before anything starts)."""
        if LOCAL_GPU in spec.gpu_types:
            return []
        return [f"gpu_types: the local provider offers only the GPU type `local` (asked: "
                f"{', '.join(spec.gpu_types)}); launch with --gpu local, or set RUNPOD_API_KEY for RunPod's GPUs"]

    async def create_pod(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        """Start the boot command as a new process group (with request.nodes > 1: one per node, as one group)."""
        if LOCAL_GPU not in request.gpu_types:
            wanted = ", ".join(request.gpu_types)
            raise ProviderError(f"the local provider offers only the GPU type `local` (asked: {wanted})")
        if request.nodes > 1:
            return await self._create_group(request, on_attempt)
        pod_id = f"local-{request.run_id}-{secrets.token_hex(2)}"
        proc = self._start(pod_id, request, {}, {})
        await on_attempt(LaunchAttempt(LOCAL_GPU, True, f"started local pod {pod_id} (pid {proc.pid})"))
        return Pod(pod_id=pod_id, gpu_type=LOCAL_GPU, price_per_hour=self.price_per_hour)

    def _start(self, pod_id: str, request: PodRequest, node_env: dict[str, str],
               meta: dict[str, Any]) -> subprocess.Popen[bytes]:
        pod_dir = self.pods_dir / pod_id
        pod_dir.mkdir(parents=True, exist_ok=False)
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV and not k.startswith("PODTUI_")}
        # The pod finds the same Python podtui runs on first (the demo trainer and the agent need python3).
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env.update(request.env)
        env.update(node_env)
        env.update(PODTUI_HOME=str(pod_dir), PODTUI_LOCAL="1", RUNPOD_POD_ID=pod_id, HOME=str(pod_dir))
        argv = shlex.split(request.start_command)
        with open(pod_dir / "pod.log", "ab") as out:
            try:
                proc = subprocess.Popen(argv, cwd=pod_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                raise ProviderError(f"cannot start a local pod: {exc}") from exc
        self._procs[pod_id] = proc
        self._write_meta(pod_dir, {"pid": proc.pid, "start": process_start_time(proc.pid),
                                   "run_id": request.run_id, "name": request.name, "created_at": time.time(),
                                   **meta})
        return proc

    async def _create_group(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        """N local pods as one group, with the cluster env RunPod gives its nodes: node 0 hosts the
        rendezvous on 127.0.0.1 at a free port."""
        group_id = f"local-{request.run_id}-{secrets.token_hex(2)}"
        group_dir = self.pods_dir / group_id
        group_dir.mkdir(parents=True, exist_ok=False)
        members = [f"{group_id}-n{rank}" for rank in range(request.nodes)]
        # The group is written first: a control plane that dies halfway finds (and can end) what started.
        self._write_meta(group_dir, {"members": members, "run_id": request.run_id, "name": request.name,
                                     "created_at": time.time()}, "group.json")
        # Ports handed out but not yet listened on: a free port asked for again may come back the same.
        taken = {int(request.env.get("PODTUI_POD_PORT") or 0)}
        port = str(free_local_port())
        while int(port) in taken:
            port = str(free_local_port())
        taken.add(int(port))
        common = {"MASTER_ADDR": "127.0.0.1", "PRIMARY_ADDR": "127.0.0.1", "MASTER_PORT": port,
                  "PRIMARY_PORT": port, "NODE_ADDR": "127.0.0.1", "HOST_NODE_ADDR": f"127.0.0.1:{port}",
                  "NUM_NODES": str(request.nodes), "NUM_TRAINERS": str(request.gpu_count),
                  "WORLD_SIZE": str(request.nodes * request.gpu_count)}
        try:
            for rank, member in enumerate(members):
                node_env: dict[str, str] = {**common, "NODE_RANK": str(rank)}
                meta: dict[str, Any] = {"group": group_id}
                if request.env.get("PODTUI_CONNECT") == "pull" and rank > 0:  # each node its own port here
                    port_of_node = free_local_port()
                    while port_of_node in taken:
                        port_of_node = free_local_port()
                    taken.add(port_of_node)
                    node_env["PODTUI_POD_PORT"] = str(port_of_node)
                    meta["pod_port"] = port_of_node
                proc = self._start(member, request, node_env, meta)
                await on_attempt(LaunchAttempt(LOCAL_GPU, True, f"started node {rank}: local pod {member} "
                                                                f"(pid {proc.pid})"))
        except ProviderError:
            await self.terminate_pod(group_id)  # no half group left running
            raise
        return Pod(pod_id=group_id, gpu_type=LOCAL_GPU, price_per_hour=self.price_per_hour * request.nodes)

    def _group(self, pod_id: str) -> tuple[list[str], str] | None:
        """A group's member pods and name, or None when pod_id is a single pod."""
        try:
            meta = json.loads((self.pods_dir / pod_id / "group.json").read_text())
            return [str(m) for m in meta["members"]], str(meta.get("name", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _members(self, pod_id: str) -> list[str] | None:
        """A group's member pods, or None when pod_id is a single pod."""
        group = self._group(pod_id)
        return None if group is None else group[0]

    @staticmethod
    def _write_meta(pod_dir: Path, meta: dict[str, Any], name: str = "pod.json") -> None:
        tmp = pod_dir / f"{name}.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(pod_dir / name)

    def _meta(self, pod_id: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.pods_dir / pod_id / "pod.json").read_text()))
        except (OSError, ValueError):
            return None

    def _child_pgid(self, pod_id: str) -> int | None:
        try:
            return int(json.loads((self.pods_dir / pod_id / "agent.json").read_text())["child_pgid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _group_state(self, group_id: str, members: list[str], name: str) -> PodState:
        """A group runs while any node does; its nodes say which ended and how."""
        nodes = []
        for rank, member in enumerate(members):
            st = self._state(member) if (self.pods_dir / member / "pod.json").exists() else \
                PodState(member, "gone", detail="never started")
            nodes.append(NodeState(rank, member, st.phase, st.price_per_hour, st.exit_code, detail=st.detail))
        running = [n for n in nodes if n.phase == "running"]
        failed = next((n for n in nodes if n.phase == "gone" and n.exit_code not in (None, 0)), None)
        detail = "; ".join(f"node {n.rank}: {n.detail}" for n in nodes if n.phase == "gone")
        return PodState(group_id, "running" if running else "gone",
                        price_per_hour=self.price_per_hour * len(running), name=name,
                        exit_code=None if failed is None else failed.exit_code, detail=detail, nodes=nodes)

    def _state(self, pod_id: str) -> PodState:
        if "/" in pod_id or pod_id.startswith("."):
            return PodState(pod_id, "gone", detail="not a local pod id")
        group = self._group(pod_id)
        if group is not None:
            return self._group_state(pod_id, *group)
        meta = self._meta(pod_id)
        if meta is None:
            return PodState(pod_id, "gone", detail="no such local pod")
        proc = self._procs.get(pod_id)
        exit_code = None
        if proc is not None:
            exit_code = proc.poll()
            running = exit_code is None
        else:
            pid = int(meta["pid"])
            running = process_start_time(pid) == meta.get("start") and meta.get("start") is not None
        child = self._child_pgid(pod_id)
        if not running and child is not None and group_alive(child):
            running = True  # the agent is gone but its command is not: still a live pod
        if running:
            return PodState(pod_id, "running", price_per_hour=self.price_per_hour, name=str(meta.get("name", "")))
        return PodState(pod_id, "gone", price_per_hour=0.0, exit_code=exit_code, name=str(meta.get("name", "")),
                        detail="process exited" if exit_code is None else f"process exited with code {exit_code}")

    async def get_pod(self, pod_id: str) -> PodState:
        """running while the process group lives; gone once it has exited."""
        return self._state(pod_id)

    async def terminate_pod(self, pod_id: str) -> None:
        """SIGTERM the pod's groups, SIGKILL them after the grace period; returns once they are gone (a group
        of pods: every node)."""
        members = self._members(pod_id) if "/" not in pod_id and not pod_id.startswith(".") else None
        if members is not None:
            ends = await asyncio.gather(*(self.terminate_pod(m) for m in members), return_exceptions=True)
            failed = [str(e) for e in ends if isinstance(e, BaseException)]
            if failed:
                raise ProviderError("; ".join(failed))
            return
        meta = self._meta(pod_id)
        if meta is None or self._state(pod_id).phase == "gone":
            self._procs.pop(pod_id, None)
            return
        groups = [int(meta["pid"])]
        child = self._child_pgid(pod_id)
        if child is not None:
            groups.append(child)
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and self._state(pod_id).phase != "gone":
            await asyncio.sleep(0.1)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        for _ in range(50):
            if self._state(pod_id).phase == "gone" and not any(group_alive(g) for g in groups):
                break
            await asyncio.sleep(0.1)
        else:
            raise ProviderError(f"local pod {pod_id} did not end after SIGKILL")
        self._procs.pop(pod_id, None)

    async def stop_pod(self, pod_id: str) -> None:
        """A local pod has no disk to keep: stopping it ends it."""
        await self.terminate_pod(pod_id)

    async def list_pods(self) -> list[PodState]:
        """Every local pod still running."""
        if not self.pods_dir.is_dir():
            return []
        ids = [p.name for p in sorted(self.pods_dir.iterdir()) if (p / "group.json").exists()
               or ((p / "pod.json").exists() and "group" not in (self._meta(p.name) or {}))]
        states = [self._state(pod_id) for pod_id in ids]  # a group's members are listed as their group
        return [s for s in states if s.phase != "gone"]

    def pod_endpoint(self, pod_id: str, port: int) -> str:
        """Where a pull-mode local pod listens: its own free port on this machine (a group's node k > 0: the
        port it was given, in its pod.json)."""
        own = (self._meta(pod_id) or {}).get("pod_port") if "/" not in pod_id and not pod_id.startswith(".") \
            else None
        return f"http://127.0.0.1:{own if isinstance(own, int) else port}"

    async def pod_logs(self, pod_id: str, tail: int = 50) -> list[dict[str, str]]:
        """The last lines the pod's boot process printed (its pod.log)."""
        if "/" in pod_id or pod_id.startswith("."):
            return []
        members = self._members(pod_id)
        if members:  # a group: node 0's boot
            pod_id = members[0]
        try:
            with open(self.pods_dir / pod_id / "pod.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [{"ts": "", "source": "container", "line": line[:2000]} for line in text.splitlines()[-tail:]]

    async def close(self) -> None:
        """Nothing to release: pods outlive the control plane and are found again on restart."""
