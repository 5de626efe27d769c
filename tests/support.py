"""Test helpers: a real control plane on 127.0.0.1:0 with real SQLite, settings isolated from the user's, and a
provider that records calls. Test files import these from here; tests/conftest.py holds the fixtures."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from podtui.config import Settings
from podtui.models import LaunchSpec, Run, RunStatus
from podtui.providers.base import AttemptCallback, LaunchAttempt, Pod, PodRequest, PodState
from podtui.server import keys
from podtui.server.app import ControlPlane
from podtui.server.runs import free_port
from podtui.tokens import hash_token, new_token

__all__ = ["Plane", "RecordingProvider", "free_port", "make_settings", "settle", "start_plane"]

# Fast demo runs in tests; the pod inherits these through the local provider.
os.environ.setdefault("DEMO_STEPS", "40")
os.environ.setdefault("DEMO_STEP_SECONDS", "0.02")


class RecordingProvider:
    """A stand-in provider that records calls and creates nothing."""

    name = "local"
    self_terminate_command = ""

    def __init__(self) -> None:
        self.created: list[PodRequest] = []
        self.terminated: list[str] = []
        self.alive: set[str] = set()

    async def list_offers(self, refresh: bool = False, cloud: str = "SECURE", count: int = 1) -> list[Any]:
        from podtui.models import GpuOffer

        return [GpuOffer(id="local", name="recording", provider="local", secure_price=0.0)]

    async def create_pod(self, request: PodRequest, on_attempt: AttemptCallback) -> Pod:
        self.created.append(request)
        pod_id = f"rec-{request.run_id}"
        self.alive.add(pod_id)
        await on_attempt(LaunchAttempt("local", True, "recorded"))
        return Pod(pod_id, "local", 0.0)

    async def get_pod(self, pod_id: str) -> PodState:
        return PodState(pod_id, "running" if pod_id in self.alive else "gone")

    async def terminate_pod(self, pod_id: str) -> None:
        self.terminated.append(pod_id)
        self.alive.discard(pod_id)

    async def stop_pod(self, pod_id: str) -> None:
        await self.terminate_pod(pod_id)

    async def list_pods(self) -> list[PodState]:
        return [PodState(p, "running") for p in self.alive]

    async def close(self) -> None:
        pass


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated from the user's config and data."""
    os.environ["PODTUI_CONFIG_FILE"] = str(tmp_path / "no-config.toml")
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "port": 0, "supervisor_interval_s": 0.5}
    values.update(overrides)
    return Settings(**values)


class Plane:
    """A running control plane and an admin HTTP client for it."""

    def __init__(self, control: ControlPlane, http: httpx.AsyncClient) -> None:
        self.control = control
        self.http = http

    @property
    def store(self) -> Any:
        return self.control.store

    @property
    def url(self) -> str:
        return self.control.url

    @property
    def runs(self) -> Any:
        return self.control.runner.app[keys.RUNS]  # type: ignore[union-attr]

    async def fake_run(self, dataset: str = "demo") -> tuple[Run, str]:
        """A run row with an ingest token, without any pod (for route tests)."""
        record = await self.store.find_dataset(dataset)
        token = new_token()
        run = Run(id=secrets.token_hex(5), name="t", provider="local",
                  status=RunStatus.training, spec=LaunchSpec(dataset=dataset, gpu_types=["local"], command="true"),
                  dataset_id=record.dataset.id, created_at=time.time())
        await self.store.create_run(run, hash_token(token))
        return run, token

    async def wait_status(self, run_id: str, statuses: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = (await self.http.get(f"/api/v1/runs/{run_id}")).json()
            if run["status"] in statuses:
                return dict(run)
            await asyncio.sleep(0.2)
        raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s: {run.get('status_reason')}")


async def settle(plane: Plane, timeout: float = 30.0) -> None:
    """Wait until every finished run's pod has ended: after its command a pod brings its outputs home first (up to
    its keep-alive), and a control plane stopped meanwhile would leave it waiting for one that never comes back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(r.status.is_final and r.keep_alive_until for r in await plane.store.list_runs()):
            return
        await asyncio.sleep(0.2)


async def start_plane(settings: Settings, providers: dict[str, Any] | None = None) -> Plane:
    control = ControlPlane(settings, providers)
    await control.start()
    http = httpx.AsyncClient(base_url=control.url, headers={"Authorization": f"Bearer {control.admin_token}"},
                             trust_env=False, timeout=30)
    return Plane(control, http)


async def wait_for(check: Any, timeout: float = 30.0, what: str = "", every: float = 0.2) -> Any:
    """Await `check()` every `every` seconds until it gives something truthy, and return that; fail after
    `timeout` seconds saying `what` did not come."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout} s{': ' + what if what else ''}")


async def stop_local_plane(plane: Plane) -> None:
    """Stop a control plane with the real local provider: its live runs, and ended ones whose pod stays for the
    keep-alive (a failed test left such a pod running), are terminated first."""
    for run in await plane.store.list_runs():
        if run.pod_in_use(time.time()):
            await plane.http.post(f"/api/v1/runs/{run.id}/terminate")
    await settle(plane)
    await plane.http.aclose()
    await plane.control.stop()
