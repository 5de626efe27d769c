"""Pull mode with a volume, the pod's side: a dataset's uploaded files land on the volume (one folder per run and
node), the port says whether the volume's cache holds a key whole, and hands over what the pod said about its
dataset; a key that is no plain folder name is no route."""

import json
import urllib.error
import urllib.request

import pytest

from podtui.bootstrap.agent import pod_port
from podtui.bootstrap.agent.links import PullLink


def call(url: str, route: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url}{route}", data=body, method=method,
                                     headers={"Authorization": "Bearer pod-token"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def pod(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_POD_BIND", "127.0.0.1")
    monkeypatch.setenv("PODTUI_VOLUME", str(tmp_path / "vol"))
    monkeypatch.setenv("PODTUI_RUN_ID", "abc123")
    monkeypatch.setenv("NODE_RANK", "1")
    port = pod_port.PodPort(str(tmp_path / "home"), "pod-token", PullLink())
    server = port.serve(0)
    yield port, tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_volumes_cache_uploads_and_the_pods_word(pod):
    _, tmp, url = pod
    key = "dir-" + "a" * 40
    assert json.loads(call(url, f"/v1/cache/{key}")[1]) == {"volume": True, "cached": False}
    (tmp / "vol" / "podtui" / "datasets" / key).mkdir(parents=True)
    assert json.loads(call(url, f"/v1/cache/{key}")[1])["cached"] is False  # no .complete: not whole
    (tmp / "vol" / "podtui" / "datasets" / key / ".complete").write_text("{}")
    assert json.loads(call(url, f"/v1/cache/{key}")[1])["cached"] is True
    for bad in ("..", "a/../../etc", "x", "%2e%2e%2f%2e%2e"):
        assert call(url, f"/v1/cache/{bad}")[0] == 404

    status, _ = call(url, "/v1/inputs/data-0?offset=0", "PUT", b"hello")
    assert status == 200
    assert (tmp / "vol" / "podtui" / "uploads" / "abc123-n1" / "data-0").read_bytes() == b"hello"
    status, _ = call(url, "/v1/inputs/script?offset=0", "PUT", b"echo")
    assert (tmp / "home" / "inputs" / "script").read_bytes() == b"echo"  # the script stays in the pod
    assert json.loads(call(url, "/v1/state")[1])["inputs"] == {"data-0": {"size": 5, "done": False},
                                                               "script": {"size": 4, "done": False}}

    assert call(url, "/v1/fetched")[0] == 204
    (tmp / "home" / "dataset-fetched.json").write_text(json.dumps({"cache_hit": True, "key": key}))
    status, body = call(url, "/v1/fetched")
    assert status == 200 and json.loads(body)["cache_hit"] is True
    (tmp / "home" / "dataset-fetched.json").write_text("not json")
    assert call(url, "/v1/fetched")[0] == 204


def test_without_a_volume_uploads_stay_in_the_pod(tmp_path, monkeypatch):
    monkeypatch.delenv("PODTUI_VOLUME", raising=False)
    assert pod_port.uploads_dir(str(tmp_path), {}) == str(tmp_path / "inputs")
    port = pod_port.PodPort(str(tmp_path), "t", PullLink())
    assert port.cached("dir-" + "b" * 40) == {"volume": False, "cached": False}
