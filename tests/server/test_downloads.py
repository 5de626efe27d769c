"""Download tokens' whole life against a real control plane, with real wget and curl."""

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import time

import pytest

from podtui.server import keys
from podtui.server.downloads import issue_download_token
from podtui.tokens import hash_token

pytestmark = pytest.mark.skipif(not (shutil.which("wget") and shutil.which("curl")), reason="needs wget and curl")


async def register(plane, path, name=None):
    body = {"path": str(path), **({"name": name} if name else {})}
    r = await plane.http.post("/api/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


async def sh(*args, **kw):
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    out, err = await proc.communicate()
    return proc.returncode, out, err


@pytest.mark.parametrize("tool", ["wget", "curl"])
async def test_resume_with_real_clients_and_sha256(plane, big_file, tmp_path, tool):
    ds = await register(plane, big_file)
    run, _ = await plane.fake_run(ds["name"])
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    out = tmp_path / f"out-{tool}.bin"
    out.write_bytes(big_file.read_bytes()[:1_000_000])  # an interrupted earlier download
    url = f"{plane.url}/api/datasets/download"
    if tool == "wget":
        rc, _, err = await sh("wget", "-q", "-c", f"--header=Authorization: Bearer {token}", "-O", str(out), url,
                              env={**os.environ, "no_proxy": "127.0.0.1"})
    else:
        rc, _, err = await sh("curl", "-fsS", "-C", "-", "-o", str(out), f"{url}?token={token}")
    assert rc == 0, err
    assert hashlib.sha256(out.read_bytes()).hexdigest() == ds["sha256"]
    stats = await plane.store.download_token_stats(run.id)
    assert stats[0]["uses"] == 1 and stats[0]["first_used_at"] is not None


async def test_range_and_if_range(plane, big_file):
    ds = await register(plane, big_file)
    run, _ = await plane.fake_run(ds["name"])
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    h = {"Authorization": f"Bearer {token}"}
    full = await plane.http.get("/api/datasets/download", headers=h)
    assert full.status_code == 200 and int(full.headers["Content-Length"]) == big_file.stat().st_size
    etag = full.headers["ETag"]
    part = await plane.http.get("/api/datasets/download", headers={**h, "Range": "bytes=100-199", "If-Range": etag})
    assert part.status_code == 206 and part.content == big_file.read_bytes()[100:200]
    stale = await plane.http.get("/api/datasets/download",
                                 headers={**h, "Range": "bytes=100-199", "If-Range": '"stale-etag"'})
    assert stale.status_code == 200 and len(stale.content) == big_file.stat().st_size


async def test_expired_revoked_unknown_and_missing_tokens(plane, big_file):
    ds = await register(plane, big_file)
    run, _ = await plane.fake_run(ds["name"])
    url = "/api/datasets/download"
    expired = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    await plane.store.add_download_token(hash_token("x" * 43), ds["id"], run.id, time.time() - 1)
    r = await plane.http.get(url, params={"token": "x" * 43})
    assert r.status_code == 410 and r.json()["error"]["code"] == "token_expired"
    assert (await plane.http.get(url, params={"token": "nope"})).status_code == 401
    assert (await plane.http.get(url)).status_code == 401
    await plane.runs.terminate(run.id, "test")
    r = await plane.http.get(url, params={"token": expired})
    assert r.status_code == 410 and r.json()["error"]["code"] == "token_revoked"


async def test_scheduled_cleanup_deletes_expired_tokens(plane, big_file):
    ds = await register(plane, big_file)
    run, _ = await plane.fake_run(ds["name"])
    await plane.store.add_download_token(hash_token("old"), ds["id"], run.id, time.time() - 10)
    await issue_download_token(plane.store, ds["id"], run.id, 3600)
    supervisor = plane.control.runner.app[keys.SUPERVISOR]
    assert await supervisor.clean_tokens() == 1
    assert len(await plane.store.download_token_stats(run.id)) == 1


async def test_tokens_never_reach_the_logs(plane, big_file, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    from podtui.logs import MaskingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())
    ds = await register(plane, big_file)
    run, ingest = await plane.fake_run(ds["name"])
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    await plane.http.get("/api/datasets/download", params={"token": token})
    await plane.http.get("/api/datasets/download", headers={"Authorization": f"Bearer {token}"})
    await plane.http.post(f"/api/v1/runs/{run.id}/report", json={"logs": []},
                          headers={"Authorization": f"Bearer {ingest}"})
    logging.getLogger("podtui.test").info("GET /api/datasets/download?token=%s and Bearer %s", token, ingest)
    text = "\n".join(MaskingFilter().filter(r) and r.getMessage() for r in caplog.records)
    assert token not in text and ingest not in text
    assert "token=***" in text and "Bearer ***" in text


async def test_directory_dataset_listing_and_files(plane, tmp_path):
    root = tmp_path / "dir"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b c.txt").write_text("beta")
    ds = await register(plane, root, "dirset")
    assert ds["kind"] == "dir" and ds["file_count"] == 2
    run, _ = await plane.fake_run("dirset")
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    listing = await plane.http.get("/api/datasets/download", params={"token": token})
    lines = listing.text.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["a.txt", "sub/b c.txt"]
    r = await plane.http.get("/api/datasets/download", params={"token": token, "path": "sub/b c.txt"})
    assert r.text == "beta"


@pytest.mark.parametrize("path", ["../secret.txt", "..%2Fsecret.txt", "%2e%2e/secret.txt", "/etc/passwd",
                                  "a.txt\x00", "sub/../../secret.txt", "sub\\..\\a.txt", "missing.txt"])
async def test_path_attacks_are_refused(plane, tmp_path, path):
    root = tmp_path / "dir"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    (tmp_path / "secret.txt").write_text("secret")
    ds = await register(plane, root, "dirset")
    run, _ = await plane.fake_run("dirset")
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    r = await plane.http.get("/api/datasets/download", params={"token": token, "path": path})
    assert r.status_code in (400, 404), r.text
    assert "secret" not in r.text.replace("secret.txt", "")
    assert r.json()["error"]["message"]


async def test_raw_encoded_traversal_in_the_url_is_refused(plane, tmp_path):
    root = tmp_path / "dir"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    ds = await register(plane, root, "dirset")
    run, _ = await plane.fake_run("dirset")
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    for raw in ("..%2F..%2Fetc%2Fpasswd", "%252e%252e%252fetc", "a.txt%00"):
        r = await plane.http.get(f"/api/datasets/download?token={token}&path={raw}")
        assert r.status_code in (400, 404), (raw, r.text)


async def test_symlink_swapped_in_after_registration_is_refused(plane, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    f = data / "train.csv"
    f.write_text("a,b\n1,2\n")
    ds = await register(plane, f)
    run, _ = await plane.fake_run(ds["name"])
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    f.unlink()
    (tmp_path / "secret").write_text("top secret")
    f.symlink_to(tmp_path / "secret")
    r = await plane.http.get("/api/datasets/download", params={"token": token})
    assert r.status_code == 409 and "top secret" not in r.text


async def test_changed_file_is_refused_until_registered_again(plane, tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("a,b\n1,2\n")
    ds = await register(plane, f)
    run, _ = await plane.fake_run(ds["name"])
    token = await issue_download_token(plane.store, ds["id"], run.id, 3600)
    f.write_text("a,b\n1,2\n3,4\n")
    r = await plane.http.get("/api/datasets/download", params={"token": token})
    assert r.status_code == 409 and "register it again" in r.json()["error"]["message"]
    again = await register(plane, f)
    assert again["id"] != ds["id"]


async def test_registration_errors_are_clear(plane, tmp_path):
    r = await plane.http.post("/api/v1/datasets", json={"path": "relative/x.csv"})
    assert r.status_code == 422 and "absolute path" in r.json()["error"]["message"]
    r = await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "missing")})
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]
    root = tmp_path / "esc"
    root.mkdir()
    (tmp_path / "outside").write_text("x")
    (root / "link").symlink_to(tmp_path / "outside")
    r = await plane.http.post("/api/v1/datasets", json={"path": str(root)})
    assert r.status_code == 409 and "links outside" in r.json()["error"]["message"]


async def test_size_limit(tmp_path):
    from tests.support import RecordingProvider, make_settings, start_plane

    p = await start_plane(make_settings(tmp_path, dataset_size_limit=1000), {"local": RecordingProvider()})
    try:
        f = tmp_path / "big"
        f.write_bytes(b"x" * 2000)
        r = await p.http.post("/api/v1/datasets", json={"path": str(f)})
        assert r.status_code == 409 and "size limit" in r.json()["error"]["message"]
    finally:
        await p.http.aclose()
        await p.control.stop()


async def test_the_demo_is_registered_once_and_again_when_touched(tmp_path):
    """A start with the demo as registered writes nothing; one after the file was touched registers it again, so
    it is served (a touched file is refused until registered again)."""
    from podtui.server.app import ensure_demo_dataset
    from podtui.store import Store
    from tests.support import RecordingProvider, make_settings, start_plane

    settings = make_settings(tmp_path)
    store = await Store.open(settings.store_path)
    try:
        await ensure_demo_dataset(settings, store)
        demo = settings.data_dir / "demo" / "demo.csv"
        written = demo.stat().st_mtime_ns
        await ensure_demo_dataset(settings, store)
        assert demo.stat().st_mtime_ns == written  # not written again
        os.utime(demo, ns=(written + 5_000_000_000, written + 5_000_000_000))
        await ensure_demo_dataset(settings, store)
        record = await store.find_dataset("demo")
        assert record.manifest[0]["mtime_ns"] == demo.stat().st_mtime_ns
    finally:
        await store.close()
    plane = await start_plane(settings, {"local": RecordingProvider()})
    try:
        record = await plane.store.find_dataset("demo")
        run, _ = await plane.fake_run("demo")
        token = await issue_download_token(plane.store, record.dataset.id, run.id, 3600)
        r = await plane.http.get("/api/datasets/download", params={"token": token})
        assert r.status_code == 200 and r.content == demo.read_bytes()
    finally:
        await plane.http.aclose()
        await plane.control.stop()

