"""Datasets the pod fetches from their source itself, end to end on the local provider: the real start script,
agent and fetcher; a real file server with Range and ETag on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.fakes.file_server import FileServer, ServedFile

from .test_local_runs import all_logs

ENDED = {"succeeded", "failed", "lost", "terminated"}
PRINT_SHA = ("python3 -c \"import hashlib,os;p=os.environ['PODTUI_DATASET_PATH'];"
             "print('sha', hashlib.sha256(open(p,'rb').read()).hexdigest(), os.path.basename(p))\"")


@pytest.fixture
async def files():
    server = FileServer()
    await server.start()
    yield server
    await server.stop()


async def launch(plane, dataset, command=PRINT_SHA):
    r = await plane.http.post("/api/v1/runs", json={"dataset": dataset, "gpu_types": ["local"],
                                                    "command": command, "keep_alive_s": 0})
    assert r.status_code == 201, r.text
    run = await plane.wait_status(r.json()["id"], ENDED, timeout=120)
    events = (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
    return run, events, await all_logs(plane, run["id"])


async def test_https_source_is_fetched_by_the_pod_resumed_and_its_sha256_held_to(local_plane, files):
    data = os.urandom(3 * 1024 * 1024 + 17)
    files.files["train.bin"] = ServedFile(data)
    r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/train.bin"})
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert dataset["kind"] == "url" and dataset["name"] == "train.bin" and dataset["size_bytes"] == len(data)
    assert dataset["sha256"] == "" and dataset["source"] == f"{files.url}/train.bin"
    assert files.bytes_sent == 0  # registering lists it; nothing is downloaded by the control plane

    files.cut_after = 1024 * 1024 + 5  # the first GET breaks: the fetcher resumes with Range
    run, events, lines = await launch(local_plane, "train.bin")
    assert run["status"] == "succeeded", (run["status_reason"], events)
    want = hashlib.sha256(data).hexdigest()
    assert f"sha {want} train.bin" in [line["text"] for line in lines]
    ranges = [rng for method, name, rng in files.requests if method == "GET"]
    assert ranges[0] is None and ranges[1] == "bytes=1048581-", files.requests
    assert files.bytes_sent == len(data)  # resumed: no byte sent twice
    said = [e["message"] for e in events if e["kind"] == "dataset"]
    assert any("fetched from its source" in m and "sha256 recorded for 1 file" in m for m in said), said
    stored = (await local_plane.store.find_dataset("train.bin")).dataset
    assert stored.sha256 == want

    # the same size and ETag with other bytes: the sha256 recorded at the first fetch refuses it
    files.files["train.bin"] = ServedFile(os.urandom(len(data)), etag=files.files["train.bin"].etag)
    run, events, lines = await launch(local_plane, "train.bin")
    assert run["status"] == "failed"
    assert any("is not the one registered" in line["text"] for line in lines), [x["text"] for x in lines][-10:]

    # a new ETag: the pod says the file changed at its source and how to go on
    files.files["train.bin"] = ServedFile(data + b"more")
    run, events, lines = await launch(local_plane, "train.bin")
    assert run["status"] == "failed"
    assert any("changed at its source since it was registered" in line["text"] and "podtui datasets add" in
               line["text"] for line in lines)


async def test_a_source_that_cannot_be_listed_says_why(local_plane, files):
    r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/missing.bin"})
    assert r.status_code == 422 and "HTTP 404" in r.json()["error"]["message"]
    files.files["nohead.bin"] = ServedFile(b"x" * 1000)
    files.head_allowed = False  # some servers refuse HEAD: the size comes from a one-byte Range GET
    r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/nohead.bin", "name": "nh"})
    assert r.status_code == 201 and r.json()["size_bytes"] == 1000, r.text
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "ftp://example.com/x"})
    assert r.status_code == 422
    r = await local_plane.http.post("/api/v1/datasets", json={"path": "/tmp", "source": f"{files.url}/nohead.bin"})
    assert r.status_code == 422 and "either path" in r.text
