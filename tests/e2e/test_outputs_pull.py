"""Outputs in pull mode: the control plane lists the pod's outputs on its port, reads them in ranges and checks
each file's sha256 with the pod's; on the local provider and through the fake of RunPod's HTTPS proxy."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.fakes.runpod_v2 import GPU_4090

from .test_outputs import launch, outputs_of, pod_dir, sha256_of, wait_for
from .test_runpod_pull import cloud, finish, laptop_plane  # noqa: F401  (the fixture)


async def test_pull_mode_brings_the_model_home_and_syncs_on_request(local_plane):
    plane = local_plane
    command = ("cd $PODTUI_OUTPUT_DIR && echo v1 > ckpt.bin && echo same > same.bin && "
               "while [ ! -e $HOME/go ]; do sleep 0.05; done && echo v2-changed > ckpt.bin && "
               "head -c 3000000 /dev/urandom > model.bin && : > empty.bin")
    run = await launch(plane, command=command, connect="pull")
    await plane.wait_status(run["id"], {"training"}, timeout=30)
    r = await plane.http.post(f"/api/v1/runs/{run['id']}/outputs/sync")
    assert r.status_code == 202 and r.json()["connect"] == "pull"

    async def both_home() -> dict[str, Any] | None:
        files = {f["path"]: f for f in (await outputs_of(plane, run["id"]))["files"] if f["home_at"]}
        return files if len(files) == 2 else None

    first = await wait_for(both_home, 20)
    fresh = (await plane.http.get(f"/api/v1/runs/{run['id']}")).json()
    (pod_dir(plane, fresh) / "go").touch()
    done = await plane.wait_status(run["id"], {"succeeded", "failed"}, timeout=30)
    assert done["status"] == "succeeded", done["status_reason"]

    async def home() -> dict[str, Any] | None:
        page = await outputs_of(plane, run["id"])
        return page if page["summary"]["state"] == "home" else None

    page = await wait_for(home, 20)
    files = {f["path"]: f for f in page["files"]}
    assert files["same.bin"]["home_at"] == first["same.bin"]["home_at"]
    assert files["ckpt.bin"]["sha256"] == hashlib.sha256(b"v2-changed\n").hexdigest()
    original = pod_dir(plane, done) / "work" / "outputs" / "model.bin"
    assert files["model.bin"]["sha256"] == sha256_of(original) == sha256_of(Path(page["folder"]) / "model.bin")
    assert files["empty.bin"]["sha256"] == hashlib.sha256(b"").hexdigest()  # an empty file comes home too
    assert (Path(page["folder"]) / "empty.bin").read_bytes() == b""
    provider = plane.runs.providers["local"]

    async def pod_gone() -> bool:
        return (await provider.get_pod(done["pod_id"])).phase == "gone"

    await wait_for(pod_gone, 10, every=0.1)  # ended on the control plane's word, not at the 30 min keep-alive


async def test_outputs_through_the_proxy_with_hiccups(cloud, tmp_path):  # noqa: F811
    api, proxy = cloud
    plane = await laptop_plane(tmp_path, api, proxy, upload_chunk_bytes=1 << 20)
    try:
        command = "head -c 5000000 /dev/urandom > $PODTUI_OUTPUT_DIR/model.bin && sleep 1"
        r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090],
                                                        "command": command})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        run, events = await finish(plane, run_id)
        assert run["status"] == "succeeded", (run["status_reason"], events)
        proxy.queue_502(2)  # the proxy hiccups during the final sync

        async def home() -> dict[str, Any] | None:
            page = await outputs_of(plane, run_id)
            return page if page["summary"]["state"] == "home" else None

        page = await wait_for(home, 40)
        landed = Path(page["folder"]) / "model.bin"
        assert landed.stat().st_size == 5_000_000 and page["files"][0]["sha256"] == sha256_of(landed)
        reads = [p for m, p, s in proxy.requests if p.endswith("/v1/outputs/file") and s == 200]
        assert len(reads) >= 5  # in ranges of at most 1 MiB

        async def pod_gone() -> bool:
            return api.live_pods() == []

        await wait_for(pod_gone, 20)
    finally:
        await plane.http.aclose()
        await plane.control.stop()
