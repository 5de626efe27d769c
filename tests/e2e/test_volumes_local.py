"""Volumes on the local provider: a folder under the data dir, the same contract as a RunPod network volume.
Datasets land content-addressed in `<volume>/podtui/datasets/<key>/`, and a second run moves no byte."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.fakes.file_server import FileServer, ServedFile

from .test_local_runs import all_logs

ENDED = {"succeeded", "failed", "lost", "terminated"}
SHOW = ("python3 -c \"import hashlib,os;p=os.environ['PODTUI_DATASET_PATH'];"
        "fs=[os.path.join(d,f) for d,_,n in os.walk(p) for f in n] if os.path.isdir(p) else [p];"
        "print('at', p);print('hf', os.environ.get('HF_HOME'));"
        "[print('file', os.path.basename(f), hashlib.sha256(open(f,'rb').read()).hexdigest()) for f in fs]\"")


async def run_on(plane, dataset, volume="cache", command=SHOW):
    r = await plane.http.post("/api/v1/runs", json={"dataset": dataset, "gpu_types": ["local"], "command": command,
                                                    "keep_alive_s": 0, "volume": volume})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def finished(plane, run_id):
    run = await plane.wait_status(run_id, ENDED, timeout=180)
    events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    assert run["status"] == "succeeded", (run["status_reason"], events)
    lines = [line["text"] for line in await all_logs(plane, run_id)]
    return run, [e["message"] for e in events if e["kind"] == "dataset"], lines


async def test_second_run_on_a_local_volume_moves_no_byte(local_plane, tmp_path):
    r = await local_plane.http.post("/api/v1/volumes", json={"name": "cache", "provider": "local"})
    assert r.status_code == 201, r.text
    volume_dir = local_plane.control.settings.data_dir / "volumes" / "cache"
    assert r.json()["path"] == str(volume_dir)
    folder = tmp_path / "shards"
    folder.mkdir()
    blobs = {f"s{i}.bin": os.urandom(300_000 + i) for i in range(3)}
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    r = await local_plane.http.post("/api/v1/datasets", json={"path": str(folder), "name": "shards"})
    assert r.status_code == 201
    # the same content under a second name: one copy on the volume serves both
    r = await local_plane.http.post("/api/v1/datasets", json={"path": str(folder), "name": "shards-too"})
    assert r.status_code == 201

    first, said, lines = await finished(local_plane, await run_on(local_plane, "shards"))
    assert any("fetched from the control plane on volume cache" in m for m in said), said
    at = next(t for t in lines if t.startswith("at "))[3:]
    assert at.startswith(str(volume_dir / "podtui" / "datasets")) and os.path.isfile(os.path.join(at, ".complete"))
    assert f"hf {volume_dir}/podtui/hf" in lines
    for name, data in blobs.items():
        assert f"file {name} {hashlib.sha256(data).hexdigest()}" in lines
    before = (await local_plane.store.download_token_stats(first["id"]))[0]["uses"]
    assert before >= 3

    second, said, lines = await finished(local_plane, await run_on(local_plane, "shards-too"))
    assert any("found whole in the cache on volume cache: 0 bytes moved" in m for m in said), said
    assert (await local_plane.store.download_token_stats(second["id"]))[0]["uses"] == 0
    for name, data in blobs.items():
        assert f"file {name} {hashlib.sha256(data).hexdigest()}" in lines

    listed = {v["name"]: v for v in (await local_plane.http.get("/api/v1/volumes",
                                                                params={"provider": "local"})).json()}
    assert set(listed["cache"]["cached"]) == {"shards", "shards-too"}
    assert listed["cache"]["used_bytes"] >= sum(map(len, blobs.values()))
    datasets = {d["name"]: d for d in (await local_plane.http.get("/api/v1/datasets")).json()}
    assert datasets["shards"]["cached_on"] == ["cache (local)"]


async def test_two_pods_fetching_the_same_key_share_one_copy(local_plane):
    files = FileServer()
    await files.start()
    try:
        data = os.urandom(2 * 1024 * 1024)
        files.files["big.bin"] = ServedFile(data)
        await local_plane.http.post("/api/v1/volumes", json={"name": "shared", "provider": "local"})
        r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/big.bin"})
        assert r.status_code == 201
        ids = [await run_on(local_plane, "big.bin", "shared") for _ in range(2)]
        results = await asyncio.gather(*(finished(local_plane, i) for i in ids))
        for _, _, lines in results:
            assert f"file big.bin {hashlib.sha256(data).hexdigest()}" in lines
        cache = local_plane.control.settings.data_dir / "volumes" / "shared" / "podtui" / "datasets"
        entries = sorted(p.name for p in cache.iterdir())
        assert len(entries) == 1 and ".partial" not in entries[0], entries  # one copy, no leftovers
        sent = files.bytes_sent
        _, said, _ = await finished(local_plane, await run_on(local_plane, "big.bin", "shared"))
        assert files.bytes_sent == sent and any("0 bytes moved" in m for m in said)
    finally:
        await files.stop()


async def test_volume_errors_are_plain(local_plane):
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                          "volume": "nope"})
    assert r.status_code == 404 and "podtui volumes" in r.json()["error"]["message"]
    assert await local_plane.store.list_runs() == []
    r = await local_plane.http.post("/api/v1/volumes", json={"name": "v1", "provider": "local"})
    assert r.status_code == 201
    r = await local_plane.http.post("/api/v1/volumes", json={"name": "v1", "provider": "local"})
    assert r.status_code == 409 and "launch with --volume v1 to use it" in r.json()["error"]["message"]
    r = await local_plane.http.post("/api/v1/volumes", json={"name": "../x", "provider": "local"})
    assert r.status_code == 422
    r = await local_plane.http.post("/api/v1/volumes", json={"name": "rp", "provider": "runpod", "size_gb": 10,
                                                             "data_center": "EU-RO-1"})
    assert r.status_code == 409 and "RUNPOD_API_KEY" in r.json()["error"]["message"]
    # in use: refused; after the run, removed
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"], "volume": "v1",
                                                          "command": "sleep 30", "keep_alive_s": 0})
    run_id = r.json()["id"]
    await local_plane.wait_status(run_id, {"training"}, timeout=60)
    r = await local_plane.http.delete("/api/v1/volumes/v1", params={"provider": "local"})
    assert r.status_code == 409 and run_id in r.json()["error"]["message"]
    await local_plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    await local_plane.wait_status(run_id, ENDED, timeout=60)
    for _ in range(100):
        r = await local_plane.http.delete("/api/v1/volumes/v1", params={"provider": "local"})
        if r.status_code != 409:
            break
        await asyncio.sleep(0.2)
    assert r.status_code == 200, r.text
    assert not (local_plane.control.settings.data_dir / "volumes" / "v1").exists()


@pytest.mark.parametrize("args", [["volumes", "--json"]])
def test_cli_volumes_needs_a_control_plane(args, tmp_path):
    from click.testing import CliRunner

    from podtui.cli import main

    result = CliRunner().invoke(main, ["--server", "http://127.0.0.1:9", *args],
                                env={"PODTUI_CONFIG_FILE": str(tmp_path / "c.toml")})
    assert result.exit_code == 2 and "error:" in result.output
