"""Datasets the pod fetches from their source itself, end to end on the local provider: the real start script,
agent and fetcher; a real file server with Range and ETag on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
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
    assert 0 < run["data_wait_s"] < run["ended_at"] - run["started_at"]  # the fetch is the run's wait for data
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
    assert r.status_code == 404 and "HTTP 404" in r.json()["error"]["message"]
    files.files["nohead.bin"] = ServedFile(b"x" * 1000)
    files.head_allowed = False  # some servers refuse HEAD: the size comes from a one-byte Range GET
    r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/nohead.bin", "name": "nh"})
    assert r.status_code == 201 and r.json()["size_bytes"] == 1000, r.text
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "ftp://example.com/x"})
    assert r.status_code == 422  # not a source the schema allows
    for bare in ("http://", "hf://", "s3://"):  # said in words, not as the schema's pattern
        r = await local_plane.http.post("/api/v1/datasets", json={"source": bare})
        assert r.status_code == 422 and "source: write https://HOST/PATH, s3://BUCKET" in r.text, r.text
    # what the schema's pattern allows is not refused as a bad body (the fuzzer holds us to that): the Hub's words
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://\u00a0x"})
    assert r.status_code == 409 and "is not a Hub source" in r.json()["error"]["message"], r.text
    local_plane.control.settings.hf_endpoint = "http://127.0.0.1:9"  # a Hub that does not answer: no 500
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://datasets/org/name"})
    assert r.status_code == 409 and "cannot reach the Hub at http://127.0.0.1:9" in r.json()["error"]["message"]
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "http://127.0.0.1:9/x"})
    assert r.status_code == 409 and "cannot reach" in r.json()["error"]["message"]
    r = await local_plane.http.post("/api/v1/datasets", json={"path": "/tmp", "source": f"{files.url}/nohead.bin"})
    assert r.status_code == 422 and "either path" in r.text


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 in server mode on 127.0.0.1, with the control plane's AWS credentials in its environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPODTUITEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "podtui-secret-never-in-a-pod")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://{host}:{port}"
    server.stop()


LIST_FILES = ("python3 -c \"import hashlib,os;p=os.environ['PODTUI_DATASET_PATH'];"
              "print('secret' if 'AWS_SECRET_ACCESS_KEY' in os.environ else 'no secret');"
              "[print('file', os.path.relpath(os.path.join(d,f),p), hashlib.sha256(open(os.path.join(d,f),'rb')"
              ".read()).hexdigest()) for d,_,fs in os.walk(p) for f in fs if not f.startswith('.')]\"")


async def test_s3_prefix_and_key_fetched_through_presigned_urls(local_plane, s3):
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="podtui-data")
    objects = {"shards/a.bin": os.urandom(700_000), "shards/sub/b.bin": os.urandom(300_001),
               "shards-other/c.bin": b"not under the prefix", "single.csv": b"x,y\n1,2\n"}
    for key, body in objects.items():
        client.put_object(Bucket="podtui-data", Key=key, Body=body)

    r = await local_plane.http.post("/api/v1/datasets", json={"source": "s3://podtui-data/shards",
                                                              "s3_endpoint_url": s3})
    assert r.status_code == 201, r.text
    listed = r.json()
    assert (listed["kind"], listed["name"], listed["file_count"]) == ("s3", "shards", 2)
    assert listed["size_bytes"] == 1_000_001

    run, events, lines = await launch(local_plane, "shards", LIST_FILES)
    assert run["status"] == "succeeded", (run["status_reason"], events)
    texts = [line["text"] for line in lines]
    assert "no secret" in texts
    for rel, key in (("a.bin", "shards/a.bin"), ("sub/b.bin", "shards/sub/b.bin")):
        assert f"file {rel} {hashlib.sha256(objects[key]).hexdigest()}" in texts
    assert not any("c.bin" in t for t in texts)
    # the pod's plan holds presigned URLs, never the secret
    from podtui.server.sources import fetch_plan

    record = await local_plane.store.find_dataset("shards")
    plan = json.dumps(fetch_plan(record.dataset, record.root, record.manifest, local_plane.control.settings))
    assert "X-Amz-Signature" in plan and "podtui-secret-never-in-a-pod" not in plan

    # one object: the dataset path is the file itself; the endpoint comes from the setting this time
    local_plane.control.settings.s3_endpoint_url = s3
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "s3://podtui-data/single.csv"})
    assert r.status_code == 201 and r.json()["file_count"] == 1, r.text
    run, events, lines = await launch(local_plane, "single.csv", PRINT_SHA)
    assert run["status"] == "succeeded", (run["status_reason"], events)
    assert f"sha {hashlib.sha256(objects['single.csv']).hexdigest()} single.csv" in [x["text"] for x in lines]

    r = await local_plane.http.post("/api/v1/datasets", json={"source": "s3://podtui-data/nothing-here/"})
    assert r.status_code == 404 and "holds no object" in r.json()["error"]["message"]
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "s3://no-such-bucket/x/"})
    assert r.status_code == 404 and "NoSuchBucket" in r.json()["error"]["message"]


async def test_s3_without_credentials_says_where_to_set_them(local_plane, s3, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "s3://podtui-data/x", "s3_endpoint_url": s3})
    assert r.status_code == 409 and "no AWS credentials" in r.json()["error"]["message"]


@pytest.fixture
async def hub(local_plane):
    from tests.fakes.hf_hub import FakeHub

    fake = FakeHub()
    await fake.start()
    local_plane.control.settings.hf_endpoint = fake.url
    yield fake
    await fake.stop()


HF_FILES = LIST_FILES.replace("'AWS_SECRET_ACCESS_KEY'", "'HF_TOKEN'")


async def test_hf_dataset_pinned_listed_by_the_hub_client_and_fetched_by_the_pod(local_plane, hub):
    from tests.fakes.hf_hub import HubRepo

    shards = {f"data/train-0000{i}.parquet": os.urandom(400_000 + i) for i in range(2)}
    repo = HubRepo(files={"README.md": b"# tiny\n", "data/test.parquet": os.urandom(1000), **shards},
                   lfs={"data/test.parquet", *shards})
    hub.repos[("dataset", "podtui/tiny")] = repo
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://datasets/podtui/tiny/data/train-*"})
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert (dataset["kind"], dataset["name"], dataset["file_count"]) == ("hf", "tiny", 2)
    assert dataset["revision"] == repo.commit and dataset["size_bytes"] == sum(map(len, shards.values()))
    assert any("cursor=" in path for _, path, _ in hub.requests)  # the listing was paginated, and followed

    run, events, lines = await launch(local_plane, "tiny", HF_FILES)
    assert run["status"] == "succeeded", (run["status_reason"], events)
    texts = [line["text"] for line in lines]
    for path, data in shards.items():
        assert f"file {path} {hashlib.sha256(data).hexdigest()}" in texts
    assert not any("test.parquet" in t or "README" in t for t in texts)
    resolved = [path for _, path, _ in hub.requests if "/resolve/" in path]
    assert resolved and all(f"/resolve/{repo.commit}/" in path for path in resolved)  # pinned at add

    # an LFS file whose bytes differ from the listed sha256 is refused by the pod
    bad = dict(shards)
    bad["data/train-00000.parquet"] = os.urandom(400_000)
    hub.repos[("dataset", "podtui/tiny")] = HubRepo(files=bad, lfs=set(bad), commit=repo.commit)
    run, events, lines = await launch(local_plane, "tiny", HF_FILES)
    assert run["status"] == "failed"
    assert any("is not the one registered" in line["text"] for line in lines)

    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://datasets/podtui/tiny@v9"})
    assert r.status_code == 404 and "has no revision 'v9'" in r.json()["error"]["message"]
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://datasets/podtui/tiny/nothing/*"})
    assert r.status_code == 404 and "matches" in r.json()["error"]["message"]


async def test_private_hf_model_needs_the_token_which_reaches_the_pod_only_in_its_script(local_plane, hub):
    from tests.fakes.hf_hub import HubRepo

    weights = os.urandom(500_000)
    hub.repos[("model", "podtui/secret-model")] = HubRepo(
        files={"config.json": b'{"a": 1}', "model.safetensors": weights}, lfs={"model.safetensors"}, private=True)
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://podtui/secret-model"})
    assert r.status_code == 404 and "HF_TOKEN" in r.json()["error"]["message"], r.text
    local_plane.control.settings.hf_token = hub.token
    r = await local_plane.http.post("/api/v1/datasets", json={"source": "hf://podtui/secret-model@main",
                                                              "name": "base"})
    assert r.status_code == 201, r.text
    assert r.json()["file_count"] == 2
    run, events, lines = await launch(local_plane, "base", HF_FILES)
    assert run["status"] == "succeeded", (run["status_reason"], events)
    texts = [line["text"] for line in lines]
    assert "no secret" in texts  # no HF_TOKEN in the pod's environment
    assert f"file model.safetensors {hashlib.sha256(weights).hexdigest()}" in texts
    assert not any(hub.token in t for t in texts)


async def test_remote_dataset_in_pull_mode_and_in_doctor(local_plane, files):
    """Pull mode (no public URL): the control plane uploads no dataset byte; the pod fetches it from its source."""
    from podtui.server.doctor import check_datasets

    data = os.urandom(600_000)
    files.files["pull.bin"] = ServedFile(data)
    r = await local_plane.http.post("/api/v1/datasets", json={"source": f"{files.url}/pull.bin"})
    assert r.status_code == 201
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "pull.bin", "gpu_types": ["local"],
                                                          "command": PRINT_SHA, "keep_alive_s": 0,
                                                          "connect": "pull"})
    assert r.status_code == 201, r.text
    run = await local_plane.wait_status(r.json()["id"], ENDED, timeout=120)
    events = (await local_plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
    assert run["status"] == "succeeded", (run["status_reason"], events)
    lines = [x["text"] for x in await all_logs(local_plane, run["id"])]
    assert f"sha {hashlib.sha256(data).hexdigest()} pull.bin" in lines
    assert files.bytes_sent == len(data)
    checks = {c.name: c for c in await check_datasets(local_plane.store, local_plane.control.settings)}
    assert checks["dataset pull.bin"].status == "ok" and "fetched by the pods" in checks["dataset pull.bin"].message
