"""Pull mode: the pod's sha256 of an output is the hash of the bytes it sent, without reading the file again."""

import hashlib
import json
import os
import urllib.parse
import urllib.request

import pytest

from podtui.bootstrap import agent

PIECE = 1 << 20


@pytest.fixture
def pod(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_POD_BIND", "127.0.0.1")
    out = tmp_path / "outputs"
    out.mkdir()
    port = agent.PodPort(str(tmp_path / "home"), "pod-token", agent.PullLink())
    port.output_dir = str(out)
    server = port.serve(0)
    reads = []
    real = agent.hash_prefix
    monkeypatch.setattr(agent, "hash_prefix", lambda path, size: reads.append(path) or real(path, size))
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
