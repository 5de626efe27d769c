"""RunPod network volumes through the fake REST v2 (built from RunPod's document): list, create and delete over
/v2/network-volumes, and `launch --volume` = `mounts.network` + `dataCenterIds` = the volume's data center,
Secure Cloud."""

from __future__ import annotations

import pytest

from tests.fakes.runpod_v2 import GPU_4090, GPU_A100

from .test_runpod import fake, plane_for, planes, wait_until  # noqa: F401  (fixtures)


class S3Volume:
    """A control plane on the fake RunPod whose volumes' S3 API is moto's server, and a boto3 client for it."""

    def __init__(self, tmp_path, runpod, made_planes, endpoint: str) -> None:
        self.tmp_path, self.runpod, self.made_planes, self.endpoint = tmp_path, runpod, made_planes, endpoint
        self.plane = None
        self.client = None

    async def volume(self, name: str) -> dict:
        """A RunPod network volume made through the control plane; its bucket (the volume itself) made in moto."""
        import boto3

        self.plane = await plane_for(self.tmp_path, self.runpod, self.made_planes, runpod_s3_url=self.endpoint,
                                     runpod_s3_access_key="user_test", runpod_s3_secret="rps_test")
        made = (await self.plane.http.post("/api/v1/volumes", json={"name": name, "provider": "runpod",
                                                                    "size_gb": 20, "data_center": "US-KS-2"})).json()
        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="user_test",
                                   aws_secret_access_key="rps_test", region_name="us-east-1")
        self.client.create_bucket(Bucket=made["id"])  # RunPod's bucket is the volume itself
        return made


@pytest.fixture
def s3_volume(tmp_path, fake, planes):  # noqa: F811
    """moto's S3 server as the volumes' S3 API (`S3Volume.volume` makes one)."""
    from moto.server import ThreadedMotoServer

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    yield S3Volume(tmp_path, fake, planes, f"http://{host}:{port}")
    s3.stop()


async def test_network_volume_lifecycle_and_a_launch_that_mounts_it(tmp_path, fake, planes):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    r = await plane.http.post("/api/v1/volumes", json={"name": "data", "provider": "runpod", "size_gb": 50,
                                                       "data_center": "EU-RO-1"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["data_center"], made["size_gb"], made["type"], made["price_per_month"]) == \
        ("EU-RO-1", 50, "STANDARD", 3.5)
    assert fake.network_volumes[made["id"]]["name"] == "data"
    assert ("POST /v2/network-volumes", {"name": "data", "size": 50, "dataCenter": "EU-RO-1"}) in fake.bodies
    r = await plane.http.post("/api/v1/volumes", json={"name": "data", "provider": "runpod", "size_gb": 10,
                                                       "data_center": "EU-RO-1"})
    assert r.status_code == 409
    r = await plane.http.post("/api/v1/volumes", json={"name": "x", "provider": "runpod", "size_gb": 10,
                                                       "data_center": "EU-RO-1", "type": "HIGH_PERFORMANCE"})
    assert r.status_code == 409 and "offers no HIGH_PERFORMANCE" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/volumes", json={"name": "x", "provider": "runpod"})
    assert r.status_code == 422 and "--size" in r.json()["error"]["message"]

    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "data",
                                                    "cloud_type": "COMMUNITY"})
    assert r.status_code == 422 and "Secure Cloud only" in r.json()["error"]["message"]
    fake.no_capacity.add((GPU_4090, "EU-RO-1"))  # none where the volume is: said before any pod
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "data"})
    assert r.status_code == 409 and "is in EU-RO-1, where none of" in r.json()["error"]["message"], r.text
    assert GPU_A100 in r.json()["error"]["message"]  # what is in stock there
    fake.no_capacity.clear()
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "data"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    await wait_until(lambda: any(call == "POST /v2/pods" for call, _ in fake.bodies))
    body = next(b for call, b in fake.bodies if call == "POST /v2/pods")
    assert body["mounts"] == {"network": [{"volumeId": made["id"], "path": "/workspace"}]}
    assert body["dataCenterIds"] == ["EU-RO-1"] and body["cloud"] == "SECURE"
    assert body["env"]["PODTUI_VOLUME"] == "/workspace" and body["env"]["HF_HOME"] == "/workspace/podtui/hf"
    await wait_until(lambda: fake.live_pods())
    assert fake.live_pods()[0]["dataCenterId"] == "EU-RO-1"

    listed = (await plane.http.get("/api/v1/volumes", params={"provider": "runpod"})).json()
    assert [(v["name"], v["in_use_by"]) for v in listed] == [("data", [run_id])]
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 409 and run_id in r.json()["error"]["message"]
    assert made["id"] in fake.network_volumes

    await plane.http.post(f"/api/v1/runs/{run_id}/terminate")
    await plane.wait_status(run_id, {"terminated"}, timeout=60)
    await wait_until(lambda: not fake.live_pods(), 30)
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 200, r.text
    assert fake.network_volumes == {}
    r = await plane.http.delete("/api/v1/volumes/data", params={"provider": "runpod"})
    assert r.status_code == 404


async def test_datasets_push_lands_where_a_pod_looks_and_resumes(tmp_path, s3_volume):
    import asyncio
    import json

    from click.testing import CliRunner

    from podtui.cli import main

    made = await s3_volume.volume("vol")
    plane, client = s3_volume.plane, s3_volume.client
    folder = tmp_path / "set"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a" * 700_000)
    (folder / "sub" / "b.bin").write_bytes(b"b" * 1000)
    r = await plane.http.post("/api/v1/datasets", json={"path": str(folder), "name": "set"})
    assert r.status_code == 201

    async with plane.http.stream("POST", "/api/v1/datasets/set/push", json={"volume": "vol"}) as answer:
        assert answer.status_code == 200
        lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
    result = lines[-1]["result"]
    assert result["uploaded_bytes"] == 701_000 and result["skipped_bytes"] == 0, lines
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=made["id"])["Contents"])
    prefix = f"podtui/datasets/{result['key']}"
    assert keys == [f"{prefix}/.complete", f"{prefix}/a.bin", f"{prefix}/sub/b.bin"]
    marker = json.loads(client.get_object(Bucket=made["id"], Key=f"{prefix}/.complete")["Body"].read())
    assert set(marker["sha256"]) == {"a.bin", "sub/b.bin"}
    listed = {d["name"]: d for d in (await plane.http.get("/api/v1/datasets")).json()}
    assert listed["set"]["cached_on"] == ["vol"]

    # a push broken off before .complete resumes file by file; a whole one is not sent again
    client.delete_object(Bucket=made["id"], Key=f"{prefix}/.complete")
    env = {"PODTUI_SERVER": plane.url, "PODTUI_ADMIN_TOKEN": plane.control.admin_token,
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "NO_PROXY": "127.0.0.1"}
    out = await asyncio.to_thread(CliRunner().invoke, main, ["datasets", "push", "set", "--volume", "vol"],
                                  env=env)
    assert out.exit_code == 0, out.output
    assert "set is on vol: 0 B sent, 684.6 KiB already there" in out.output

    r = await plane.http.post("/api/v1/datasets/set/push", json={"volume": "nope"})
    assert r.status_code == 404
    r = await plane.http.post("/api/v1/datasets/demo/push", json={})
    assert r.status_code == 422



async def test_a_dataset_larger_than_the_container_disk_needs_a_volume(tmp_path, fake, planes):  # noqa: F811
    import json
    import time

    from podtui.models import Dataset
    from podtui.server.datasets import dataset_id_of

    plane = await plane_for(tmp_path, fake, planes)
    source = "hf://datasets/org/huge"
    big = Dataset(id=dataset_id_of("huge", "d" * 64), name="huge", path=source, kind="hf", size_bytes=100 * 10**9,
                  file_count=1, sha256="d" * 64, created_at=time.time(), source=source, revision="c" * 40)
    await plane.store.save_dataset(big, json.dumps({"source": source, "digest": "d" * 64, "repo_type": "dataset",
                                                    "repo_id": "org/huge"}),
                                   [{"path": "all.parquet", "size": 100 * 10**9, "sha256": "e" * 64, "etag": None}])
    body = {"dataset": "huge", "gpu_types": [GPU_4090], "command": "true"}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 422, r.text
    assert "100.0 GB" in r.json()["error"]["message"] and "--volume" in r.json()["error"]["message"]
    assert not any(call == "POST /v2/pods" for call, _ in fake.bodies)
    await plane.http.post("/api/v1/volumes", json={"name": "big", "provider": "runpod", "size_gb": 200,
                                                   "data_center": "US-KS-2"})
    r = await plane.http.post("/api/v1/runs", json={**body, "volume": "big"})
    assert r.status_code == 201, r.text
    await wait_until(lambda: fake.live_pods())
    await plane.http.post(f"/api/v1/runs/{r.json()['id']}/terminate")
    await plane.wait_status(r.json()["id"], {"terminated"}, timeout=60)


async def test_outputs_on_a_network_volume_are_listed_and_fetched_through_its_s3_api(tmp_path, fake, s3_volume):  # noqa: F811
    import hashlib
    import json


    made = await s3_volume.volume("out")
    plane, client = s3_volume.plane, s3_volume.client
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "out",
                                                    "outputs_on_volume": True, "command": "true"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    await wait_until(lambda: any(call == "POST /v2/pods" for call, _ in fake.bodies))
    body = next(b for call, b in fake.bodies if call == "POST /v2/pods")
    assert body["env"]["PODTUI_VOLUME_OUTPUTS"] == f"/workspace/podtui/outputs/{rid}"
    assert body["mounts"] == {"network": [{"volumeId": made["id"], "path": "/workspace"}]}
    # what the pod's command wrote under /workspace/podtui/outputs/<run>/ is, for RunPod's S3 API, this:
    model = bytes(range(256)) * 40_000
    client.put_object(Bucket=made["id"], Key=f"podtui/outputs/{rid}/model.safetensors", Body=model)
    client.put_object(Bucket=made["id"], Key=f"podtui/outputs/{rid}/logs/train.txt", Body=b"done\n")
    client.put_object(Bucket=made["id"], Key="podtui/outputs/other-run/x.bin", Body=b"not ours")

    page = (await plane.http.get(f"/api/v1/runs/{rid}/outputs", params={"fresh": "1"})).json()
    vol = page["volume"]
    assert vol["location"] == f"s3://{made['id']}/podtui/outputs/{rid}/"
    assert vol["path"] == f"/workspace/podtui/outputs/{rid}/"
    assert [(f["path"], f["size"]) for f in vol["files"]] == [("logs/train.txt", 5), ("model.safetensors",
                                                                                     len(model))]
    assert page["files"] == []

    async with plane.http.stream("POST", f"/api/v1/runs/{rid}/outputs/fetch") as answer:
        assert answer.status_code == 200
        lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
    result = lines[-1]["result"]
    assert (result["fetched"], result["bytes"], result["failed"]) == (2, len(model) + 5, []), lines
    page = (await plane.http.get(f"/api/v1/runs/{rid}/outputs")).json()
    assert {f["path"]: f["sha256"] for f in page["files"]} == {
        "model.safetensors": hashlib.sha256(model).hexdigest(),
        "logs/train.txt": hashlib.sha256(b"done\n").hexdigest()}
    home = plane.control.settings.data_dir / "outputs" / rid / "model.safetensors"
    assert home.read_bytes() == model
    r = await plane.http.get(f"/api/v1/runs/{rid}/outputs/file", params={"path": "logs/train.txt"})
    assert r.content == b"done\n"
    await plane.http.post(f"/api/v1/runs/{rid}/terminate")
    await plane.wait_status(rid, {"terminated"}, timeout=60)



async def test_outputs_on_a_network_volume_without_the_s3_key_say_what_is_missing(tmp_path, fake,  # noqa: F811
                                                                                    planes):  # noqa: F811
    plane = await plane_for(tmp_path, fake, planes)
    await plane.http.post("/api/v1/volumes", json={"name": "out", "provider": "runpod", "size_gb": 20,
                                                   "data_center": "US-KS-2"})
    r = await plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": [GPU_4090], "volume": "out",
                                                    "outputs_on_volume": True, "command": "true"})
    rid = r.json()["id"]
    page = (await plane.http.get(f"/api/v1/runs/{rid}/outputs")).json()
    assert "PODTUI_RUNPOD_S3_ACCESS_KEY" in page["volume"]["note"] and page["volume"]["files"] == []
    async with plane.http.stream("POST", f"/api/v1/runs/{rid}/outputs/fetch") as answer:
        lines = [line async for line in answer.aiter_lines() if line.strip()]
    assert "S3 API key" in lines[-1] and "error" in lines[-1]
    await plane.http.post(f"/api/v1/runs/{rid}/terminate")
    await plane.wait_status(rid, {"terminated"}, timeout=60)


LIST_HF = ("python3 -c \"import hashlib,os;p=os.environ['PODTUI_DATASET_PATH'];print('at', p);"
           "print('hf', os.environ.get('HF_HOME'));"
           "[print('file', os.path.relpath(os.path.join(d,f),p), hashlib.sha256(open(os.path.join(d,f),'rb')"
           ".read()).hexdigest()) for d,_,fs in os.walk(p) for f in fs if not f.startswith('.')]\"")


async def test_a_hub_dataset_goes_hub_to_volume_never_through_this_machine_and_the_next_run_finds_it(
        tmp_path, fake, planes):  # noqa: F811
    """Issue 25's end: a RunPod launch with a Hugging Face dataset and a network volume. The pod (the fake's
    executed container, the volume mounted at /workspace as a folder every pod mounting it shares) fetches the
    files from the Hub itself into the volume's cache; the control plane serves no dataset byte; a second run on
    the same volume finds them there and asks the Hub for none."""
    import hashlib
    import os

    from tests.fakes.hf_hub import FakeHub, HubRepo

    hub = FakeHub()
    await hub.start()
    try:
        fake.execute = True
        plane = await plane_for(tmp_path, fake, planes, hf_endpoint=hub.url)
        shards = {f"data/train-{i:05d}.parquet": os.urandom(600_000 + i) for i in range(3)}
        repo = HubRepo(files={"README.md": b"# corpus\n", **shards}, lfs=set(shards))
        hub.repos[("dataset", "podtui/corpus")] = repo
        r = await plane.http.post("/api/v1/datasets", json={"source": "hf://datasets/podtui/corpus/data/*"})
        assert r.status_code == 201, r.text
        r = await plane.http.post("/api/v1/volumes", json={"name": "cache", "provider": "runpod", "size_gb": 100,
                                                           "data_center": "EU-RO-1"})
        assert r.status_code == 201, r.text
        volume = fake.volume_dir(r.json()["id"])

        async def run_once() -> tuple[dict, list[str], list[str]]:
            hub.requests.clear()
            r = await plane.http.post("/api/v1/runs", json={
                "dataset": "corpus", "gpu_types": [GPU_4090], "provider": "runpod", "volume": "cache",
                "command": LIST_HF, "keep_alive_s": 0})
            assert r.status_code == 201, r.text
            run = await plane.wait_status(r.json()["id"], {"succeeded", "failed", "lost", "terminated"},
                                          timeout=120)
            lines = [x["text"] for x in (await plane.http.get(f"/api/v1/runs/{run['id']}/logs",
                                                              params={"limit": 5000})).json()["lines"]]
            resolved = [path for _, path, _ in hub.requests if "/resolve/" in path]
            assert run["status"] == "succeeded", (run["status_reason"], lines[-20:])
            for path, data in shards.items():
                assert f"file {path} {hashlib.sha256(data).hexdigest()}" in lines
            assert not any("README" in t for t in lines)
            assert (await plane.store.download_token_stats(run["id"]))[0]["uses"] == 0  # no byte from here
            return run, lines, resolved

        _, lines, resolved = await run_once()
        assert len(resolved) == len(shards) and all(f"/resolve/{repo.commit}/" in p for p in resolved)
        at = next(t for t in lines if t.startswith("at "))[3:]
        assert at.startswith(str(volume / "podtui" / "datasets")), at  # on the volume, not the pod's disk
        assert f"hf {volume}/podtui/hf" in lines  # models the trainer downloads are cached there too

        second, lines, resolved = await run_once()
        assert resolved == []  # found whole on the volume: nothing asked of the Hub
        assert next(t for t in lines if t.startswith("at "))[3:] == at
        said = [e["message"] for e in (await plane.http.get(f"/api/v1/runs/{second['id']}/events")).json()]
        assert any("0 bytes moved" in m for m in said), said
        await wait_until(lambda: not fake.live_pods(), 30)
    finally:
        await hub.stop()
