"""Pull mode: the pod's sha256 of an output is the hash of the bytes it sent, without reading the file again."""

import hashlib
import json
import os
import time
import types
import urllib.parse
import urllib.request

import pytest

from podtui.bootstrap.agent import pod_port
from podtui.bootstrap.agent.links import PullLink

PIECE = 1 << 20


@pytest.fixture
def pod(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_POD_BIND", "127.0.0.1")
    out = tmp_path / "outputs"
    out.mkdir()
    port = pod_port.PodPort(str(tmp_path / "home"), "pod-token", PullLink())
    port.output_dir = str(out)
    server = port.serve(0)
    reads = []
    real = pod_port.hash_prefix
    monkeypatch.setattr(pod_port, "hash_prefix", lambda path, size: reads.append(path) or real(path, size))
    yield port, out, f"http://127.0.0.1:{server.server_address[1]}", reads
    server.shutdown()


def get(url: str, route: str, **query: object) -> bytes:
    request = urllib.request.Request(f"{url}{route}?{urllib.parse.urlencode(query)}",
                                     headers={"Authorization": "Bearer pod-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def fetch(url: str, name: str, size: int, mtime: float, start: int = 0) -> bytes:
    """What the control plane does: the ranges in order from `start`, then the sha256."""
    got = b""
    for offset in range(start, size, PIECE):
        got += get(url, "/v1/outputs/file", path=name, size=size, mtime=repr(mtime), offset=offset, length=PIECE)
    return got


def test_a_file_sent_whole_is_not_read_again_for_its_sha256(pod):
    port, out, url, reads = pod
    data = os.urandom(3 * PIECE + 5)
    (out / "model.bin").write_bytes(data)
    (out / "empty").write_bytes(b"")
    listed = {f["path"]: f for f in json.loads(get(url, "/v1/outputs"))["files"]}
    for name, content in (("model.bin", data), ("empty", b"")):
        size, mtime = listed[name]["size"], listed[name]["mtime"]
        assert fetch(url, name, size, mtime) == content
        said = json.loads(get(url, "/v1/outputs/sha256", path=name, size=size, mtime=repr(mtime)))["sha256"]
        assert said == hashlib.sha256(content).hexdigest()
    assert str(out / "model.bin") not in reads  # the hash of what was sent: no second read of the file
    assert port.sent == {}  # handed over to the sha256 cache


def test_a_resumed_file_is_read_for_its_sha256(pod):
    """A transfer that went on from the middle (the control plane restarted) has no hash of the start: read it."""
    _, out, url, reads = pod
    data = os.urandom(2 * PIECE + 7)
    (out / "model.bin").write_bytes(data)
    (listed,) = json.loads(get(url, "/v1/outputs"))["files"]
    size, mtime = listed["size"], listed["mtime"]
    assert fetch(url, "model.bin", size, mtime, start=PIECE) == data[PIECE:]
    said = json.loads(get(url, "/v1/outputs/sha256", path="model.bin", size=size, mtime=repr(mtime)))["sha256"]
    assert said == hashlib.sha256(data).hexdigest() and len(reads) == 1


async def test_long_hashing_answers_202_within_the_proxy_limit_and_is_asked_again(pod, monkeypatch):
    """RunPod's proxy ends a request at 100 s: the pod answers 202 while it hashes, and the control plane's
    call_until_done asks again until the sha256 comes."""
    from podtui.server.puller import PodLink

    port, out, url, _ = pod
    port.answer_within = 0.05
    real = pod_port.hash_prefix

    def slow(path: str, size: int) -> object:
        time.sleep(0.6)  # a large file read at disk speed
        return real(path, size)

    monkeypatch.setattr(pod_port, "hash_prefix", slow)
    data = os.urandom(PIECE + 3)
    (out / "ckpt.pt").write_bytes(data)
    entry = json.loads(get(url, "/v1/outputs"))["files"][0]
    query = {"path": "ckpt.pt", "size": entry["size"], "mtime": repr(entry["mtime"])}
    request = urllib.request.Request(f"{url}/v1/outputs/sha256?{urllib.parse.urlencode(query)}",
                                     headers={"Authorization": "Bearer pod-token"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202 and json.loads(response.read())["pending"] is True
    link = PodLink(url, "pod-token")
    try:
        answer = await link.call_until_done("GET", "/v1/outputs/sha256", params=query)
    finally:
        await link.close()
    assert answer.status_code == 200 and answer.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert port.jobs == {}


async def test_a_large_input_is_checked_off_the_request(pod, slow_inputs):
    from podtui.server.puller import PodLink

    port, _, url, _ = pod
    port.answer_within = 0.0
    data = os.urandom(2 * PIECE)
    link = PodLink(url, "pod-token")
    try:
        put = await link.call("PUT", "/v1/inputs/data-0", params={"offset": 0}, content=data)
        assert put.status_code == 200, put.text
        first = await link.call("POST", "/v1/inputs/data-0/done", content=b"{}",
                                params={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
        assert first.status_code == 202
        answer = await link.call_until_done("POST", "/v1/inputs/data-0/done", content=b"{}",
                                            params={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    finally:
        await link.close()
    assert answer.status_code == 200 and answer.json()["done"] is True and port.done["data-0"]



class SlowDigest:
    """A sha256 fed at disk speed, as a large input is (pod_port's only: the test's own hashes stay fast)."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()

    def update(self, block: bytes) -> None:
        time.sleep(0.5)
        self.inner.update(block)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


@pytest.fixture
def slow_inputs(monkeypatch):
    monkeypatch.setattr(pod_port, "hashlib", types.SimpleNamespace(sha256=SlowDigest))


def test_asking_again_while_an_input_is_checked_answers_202_at_once(pod, slow_inputs):
    """Checking a large input holds the port's lock for the whole hash; the control plane's next ask must still
    get its 202 within answer_within (RunPod's proxy ends a request at 100 s), not wait for the hash."""
    port, _, url, _ = pod
    port.answer_within = 0.2
    data = os.urandom(3 * PIECE)  # read in three blocks: 1.5 s of hashing
    assert port.put("data-0", 0, data)[0] == 200
    query = urllib.parse.urlencode({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

    def done() -> int:
        request = urllib.request.Request(f"{url}/v1/inputs/data-0/done?{query}", data=b"{}", method="POST",
                                         headers={"Authorization": "Bearer pod-token"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    assert done() == 202
    asked = time.monotonic()
    assert done() == 202
    assert time.monotonic() - asked < 1.0
