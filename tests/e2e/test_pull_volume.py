"""Pull mode with a volume, on the local provider: a local dataset goes through the volume's content-addressed cache
(the first run uploads it onto the volume and the start script renames it into the cache; a second run finds it
there and uploads no byte of it), and an https source's sha256 is recorded at its first fetch (read from the pod's
port, as push mode posts it) and held to afterwards."""

from __future__ import annotations

import hashlib
import os
import time

from podtui.server import puller as puller_module
from tests.fakes.file_server import FileServer, ServedFile

from .test_local_runs import all_logs

ENDED = {"succeeded", "failed", "lost", "terminated"}
SHOW = ("python3 -c \"import hashlib,os;p=os.environ['PODTUI_DATASET_PATH'];"
        "fs=[os.path.join(d,f) for d,_,n in os.walk(p) for f in n] if os.path.isdir(p) else [p];print('at', p);"
        "[print('file', os.path.relpath(f,p) if os.path.isdir(p) else os.path.basename(f), "
        "hashlib.sha256(open(f,'rb').read()).hexdigest()) for f in fs]\"")


def count_uploads(monkeypatch):
    """Bytes the control plane PUTs to pods, by slot (summed over pods and tries)."""
    sent: dict[str, int] = {}
    real = puller_module.send_input

    async def counting(link, upload, offset, chunk):
        async for done in real(link, upload, offset, chunk):
            sent[upload.slot] = sent.get(upload.slot, 0) + done - offset
            offset = done
            yield done

    monkeypatch.setattr(puller_module, "send_input", counting)
    return sent


async def pulled_run(plane, dataset, **spec):
    body = {"dataset": dataset, "gpu_types": ["local"], "command": SHOW, "keep_alive_s": 0, "connect": "pull",
            **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    run = await plane.wait_status(r.json()["id"], ENDED, timeout=120)
    events = (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
    lines = [line["text"] for line in await all_logs(plane, run["id"])]
    return run, events, lines


async def test_pull_mode_uses_the_volumes_cache_and_uploads_a_dataset_once(local_plane, tmp_path, monkeypatch):
    plane = local_plane
    sent = count_uploads(monkeypatch)
    assert (await plane.http.post("/api/v1/volumes", json={"name": "cache", "provider": "local"})).status_code == 201
    folder = tmp_path / "shards"
    (folder / "sub").mkdir(parents=True)
    blobs = {"a.bin": os.urandom(400_000), "sub/b.bin": os.urandom(1234)}
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    assert (await plane.http.post("/api/v1/datasets", json={"path": str(folder), "name": "shards"})).status_code == 201
    volume = plane.control.settings.data_dir / "volumes" / "cache"
    # what runs that died mid-upload left there a day ago goes; a folder still being written to stays
    dead = [volume / "podtui" / "uploads" / "deadrun-n0", volume / "podtui" / "datasets" / "dir-0ld.partial-deadrun-n0"]
    for folder in dead:
        folder.mkdir(parents=True)
        (folder / "data-0").write_bytes(b"x" * 1000)
        for path in (folder / "data-0", folder):
            os.utime(path, (time.time() - 2 * 86400,) * 2)
    live = volume / "podtui" / "uploads" / "liverun-n0"
    live.mkdir()
    (live / "data-0").write_bytes(b"y")

    run, events, lines = await pulled_run(plane, "shards", volume="cache")
    said = [e["message"] for e in events if e["kind"] == "dataset"]
    assert run["status"] == "succeeded", (run["status_reason"], events)
    assert any("uploaded into the cache on volume cache" in m for m in said), (events, lines)
    assert not any(folder.exists() for folder in dead) and (live / "data-0").is_file()
    assert any("removed 2 upload folder(s) that runs which died mid-upload left" in t for t in lines), lines
    (live / "data-0").unlink()
    live.rmdir()
    assert sum(v for k, v in sent.items() if k.startswith("data-")) == sum(map(len, blobs.values()))
    at = next(t for t in lines if t.startswith("at "))[3:]
    cache = volume / "podtui" / "datasets"
    assert at.startswith(str(cache)) and os.path.isfile(os.path.join(at, ".complete"))
    for name, data in blobs.items():
        assert f"file {name} {hashlib.sha256(data).hexdigest()}" in lines
    assert [p.name for p in cache.iterdir()] == [os.path.basename(at)]  # no partial left
    assert not any((volume / "podtui" / "uploads").iterdir())  # nor an upload folder
    listed = {d["name"]: d for d in (await plane.http.get("/api/v1/datasets")).json()}
    assert listed["shards"]["cached_on"] == ["cache (local)"]

    sent.clear()
    run, events, lines = await pulled_run(plane, "shards", volume="cache")
    said = [e["message"] for e in events if e["kind"] == "dataset"]
    assert run["status"] == "succeeded", (run["status_reason"], events)
    assert any("found whole in the cache on volume cache: 0 bytes uploaded" in m for m in said), said
    assert not any(k.startswith("data-") for k in sent), sent  # only the start script went up
    for name, data in blobs.items():
        assert f"file {name} {hashlib.sha256(data).hexdigest()}" in lines

    # a single file, with the same content as push mode would cache it
    (tmp_path / "one.txt").write_bytes(b"hello\n" * 1000)
    await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "one.txt"), "name": "one"})
    run, events, lines = await pulled_run(plane, "one", volume="cache")
    assert run["status"] == "succeeded", (run["status_reason"], events)
    one = hashlib.sha256(b"hello\n" * 1000).hexdigest()
    assert f"file one.txt {one}" in lines
    run, events, _ = await pulled_run(plane, "one", volume="cache", connect="push")
    assert any("found whole in the cache on volume cache: 0 bytes moved" in e["message"] for e in events), events


async def test_pull_mode_records_an_https_sha256_at_the_first_fetch_and_holds_to_it(local_plane):
    plane = local_plane
    files = FileServer()
    await files.start()
    try:
        data = os.urandom(300_000)
        files.files["w.bin"] = ServedFile(data)
        r = await plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/w.bin", "name": "w"})
        assert r.status_code == 201, r.text
        run, events, lines = await pulled_run(plane, "w")
        assert run["status"] == "succeeded", (run["status_reason"], events)
        assert any("sha256 recorded for 1 file(s)" in e["message"] for e in events), events
        record = await plane.store.find_dataset("w")
        assert record.manifest[0]["fetched_sha256"] == hashlib.sha256(data).hexdigest()
        # the same size and ETag, other bytes: the next fetch is refused by the sha256 of the first
        files.files["w.bin"] = ServedFile(os.urandom(300_000), etag=files.files["w.bin"].etag)
        run, events, lines = await pulled_run(plane, "w")
        assert run["status"] == "failed"
        assert any("is not the one registered" in t for t in lines), lines[-10:]
    finally:
        await files.stop()
