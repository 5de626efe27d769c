"""Outputs come home (issue 13), end to end on the local provider: the demo's model file arrives with its hash and
the pod ends right after; an interrupted file resumes; only new or changed files move; names that leave the folder
are refused; a full disk or the cap leaves an event and the files already home."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from tests.conftest import Plane, make_settings, start_plane

from .helpers import group_alive  # noqa: F401  (the pods' process groups)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def launch(plane: Plane, **spec: Any) -> dict[str, Any]:
    body = {"dataset": "demo", "gpu_types": ["local"], **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def outputs_of(plane: Plane, run_id: str) -> dict[str, Any]:
    r = await plane.http.get(f"/api/v1/runs/{run_id}/outputs")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_for(check: Any, timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout} s")


def pod_dir(plane: Plane, run: dict[str, Any]) -> Path:
    return Path(plane.control.settings.data_dir) / "pods" / run["pod_id"]


async def test_the_demo_model_comes_home_and_the_pod_ends(local_plane):
    plane = local_plane
    run = await launch(plane, env={"DEMO_CHECKPOINT_EVERY": "10"})
    done = await plane.wait_status(run["id"], {"succeeded", "failed", "terminated", "lost"}, timeout=60)
    assert done["status"] == "succeeded", done["status_reason"]

    async def home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        return page if page["summary"]["state"] == "home" else None

    page = await wait_for(home, 30)
    ended_home = time.time()
    files = {f["path"]: f for f in page["files"]}
    assert set(files) == {"model.json", "checkpoint.json"}
    pod_model = pod_dir(plane, done) / "work" / "outputs" / "model.json"
    landed = Path(page["folder"]) / "model.json"
    assert files["model.json"]["sha256"] == sha256_of(pod_model) == sha256_of(landed)
    assert files["model.json"]["size"] == landed.stat().st_size

    # The pod ends as soon as the outputs are home, not at the keep-alive's end (30 min by default).
    provider = plane.runs.providers["local"]

    async def pod_gone() -> bool:
        return (await provider.get_pod(done["pod_id"])).phase == "gone"

    await wait_for(pod_gone, 10, 0.1)
    assert time.time() - ended_home < 10
    events = [e["kind"] for e in (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()]
    assert "outputs_home" in events

    # A client downloads it, ranged and resumable, with the admin token.
    url = f"/api/v1/runs/{run['id']}/outputs/file"
    r = await plane.http.get(url, params={"path": "model.json"})
    assert r.status_code == 200 and r.content == landed.read_bytes()
    assert r.headers["X-Podtui-Sha256"] == files["model.json"]["sha256"]
    r = await plane.http.get(url, params={"path": "model.json"}, headers={"Range": "bytes=5-"})
    assert r.status_code == 206 and r.content == landed.read_bytes()[5:]
    r = await plane.http.get(url, params={"path": "../podtui.db"})
    assert r.status_code == 400 and "leave" in r.json()["error"]["message"]
