"""A RunPod pod's own end: only the pod's end proves it. The agent and the boot snippet ask RunPod to end the pod
(DELETE /v2/pods/$RUNPOD_POD_ID with the pod-scoped key), then stay up; still running after PODTUI_END_PROOF_S they
tell the control plane `pod_end_failed` and ask again. PID 1 never exits: RunPod would restart the container and
the training would run again. Against the fake RunPod (not executing: its DELETE cannot end these processes, which
is what a DELETE that did not take looks like from inside) and a stand-in control plane."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from podtui.bootstrap.script import BOOT_SNIPPET
from tests.agent_pyz import agent_pyz
from tests.fakes.report_sink import ReportSink
from tests.fakes.runpod_v2 import GPU_4090, FakeRunPodV2

AGENT = agent_pyz()


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeRunPodV2]:
    api = FakeRunPodV2(tmp_path / "fake")
    await api.start()
    yield api
    await api.stop()


async def new_pod(fake: FakeRunPodV2) -> str:
    async with httpx.AsyncClient(base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"},
                                 trust_env=False) as client:
        answer = await client.post("/v2/pods", json={"name": "podtui-x", "image": "img",
                                                     "gpu": {"id": GPU_4090, "count": 1}})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def pod_env(fake: FakeRunPodV2, pod_id: str, sink: ReportSink, home: Path) -> dict[str, str]:
    return {**os.environ, "PODTUI_URL": sink.url, "PODTUI_RUN_ID": "r1", "PODTUI_TOKEN": "t",
            "PODTUI_HOME": str(home), "NO_PROXY": "127.0.0.1", "PODTUI_RUNPOD_API_URL": fake.url,
            "RUNPOD_POD_ID": pod_id, "RUNPOD_API_KEY": fake.pod_key(pod_id), "PODTUI_END_PROOF_S": "1",
            "FAKE_RUNPOD_URL": fake.url, "PODTUI_TERMINATE_CMD": f"{fake.runpodctl} remove pod $RUNPOD_POD_ID"}


def end_failed(sink: ReportSink) -> list[str]:
    return [body["pod_end_failed"] for _, body in sink.reports if body.get("pod_end_failed")]


async def wait_for(check: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.parametrize("denied", [True, False], ids=["delete-404", "delete-204"])
async def test_the_agent_stays_up_after_asking_and_says_the_pod_could_not_end(fake, tmp_path, denied):
    fake.execute = False
    fake.runpodctl.parent.mkdir(parents=True, exist_ok=True)
    pod_id = await new_pod(fake)
    fake.pod_delete_denied = denied  # RunPod's 404 reads "not found or not accessible to the caller"
    sink = ReportSink()
    proc = await asyncio.create_subprocess_exec(sys.executable, str(AGENT), "run", "--", "true",
                                                env=pod_env(fake, pod_id, sink, tmp_path),
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert await wait_for(lambda: len(end_failed(sink)) >= 2), (sink.statuses, fake.calls)
        assert proc.returncode is None  # PID 1 never exits with its pod up: no container restart, no second run
        assert sink.statuses == ["succeeded"]
        first = end_failed(sink)[0]
        assert "could not end itself; it bills until podtui ends it" in first
        assert ("RunPod answered 404" if denied else "RunPod answered 204") in first
        asks = [c for c in fake.calls if c in ("DELETE /v2/pods/{id}", "denied:deletePod")]
        assert len(asks) >= 2  # asked again, with backoff
        # runpodctl (retired GraphQL, REST v1) is never run on RunPod, even when a command is given
        assert "graphql:unauthorized" not in fake.calls and not any("/v1/pods" in c for c in fake.calls)
    finally:
        proc.kill()
        _, err = await proc.communicate()
    assert fake.api_key not in err.decode() and fake.pod_key(pod_id) not in err.decode()


async def test_a_failed_boot_stays_up_and_tells_the_control_plane(fake, tmp_path):
    pod_id = await new_pod(fake)
    fake.pod_delete_denied = True
    sink = ReportSink()  # answers the boot fetch 410: the run has ended
    env = {**pod_env(fake, pod_id, sink, tmp_path),
           "PODTUI_BOOT": base64.b64encode(BOOT_SNIPPET.encode()).decode()}
    proc = await asyncio.create_subprocess_exec("bash", "-c", "source <(echo $PODTUI_BOOT | base64 -d)", env=env,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert await wait_for(lambda: end_failed(sink)), fake.calls
        assert proc.returncode is None
        assert "after a failed boot" in end_failed(sink)[0] and "denied:deletePod" in fake.calls
    finally:
        proc.kill()
        _, err = await proc.communicate()
    assert "the control plane refused agent (run_ended)" in err.decode()
