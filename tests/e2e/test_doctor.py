"""`podtui doctor`: passes on a good setup, fails with the right message on each broken one."""

import asyncio
import json
import os
import sys

from aiohttp import web

from .test_local_runs import free_port


async def doctor(tmp_path, **env):
    full = {**os.environ, "PODTUI_DATA_DIR": str(tmp_path / "data"), "PODTUI_CONFIG_FILE": str(tmp_path / "c.toml"),
            "PODTUI_PORT": str(free_port()), "NO_PROXY": "127.0.0.1,localhost", **env}
    full.pop("RUNPOD_API_KEY", None) if "RUNPOD_API_KEY" not in env else None
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "podtui.cli", "doctor", "--json", env=full,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert out, err.decode()
    report = json.loads(out)
    return proc.returncode, {c["name"]: c for c in report["checks"]}


async def serve(app):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_good_local_setup_passes(tmp_path):
    code, checks = await doctor(tmp_path)
    assert code == 0, checks
    for name in ("settings", "data dir", "store", "dataset demo", "provider local", "start script"):
        assert checks[name]["status"] == "ok", checks[name]


async def test_public_url_round_trip_reaches_this_control_plane(tmp_path):
    port = free_port()
    code, checks = await doctor(tmp_path, PODTUI_PORT=str(port), PODTUI_PUBLIC_URL=f"http://127.0.0.1:{port}")
    assert code == 0, checks
    assert checks["public URL reachability"]["status"] == "ok"
    assert checks["public URL scheme"]["status"] == "warn"


async def test_public_url_reaching_another_server_fails(tmp_path):
    other = web.Application()
    other.router.add_get("/{tail:.*}", lambda r: web.json_response({"nonce": "someone-else", "status": "ok"}))
    runner, url = await serve(other)
    try:
        code, checks = await doctor(tmp_path, PODTUI_PUBLIC_URL=url)
    finally:
        await runner.cleanup()
    assert code == 1
    assert "not from this control plane" in checks["public URL reachability"]["message"]


async def test_localhost_public_url_with_runpod_fails(tmp_path):
    fake = web.Application()
    fake.router.add_post("/graphql", lambda r: web.json_response({"data": {"myself": {"id": "u1"}}}))
    runner, url = await serve(fake)
    try:
        code, checks = await doctor(tmp_path, PODTUI_PROVIDER="runpod", RUNPOD_API_KEY="good",
                                    RUNPOD_API_BASE_URL=url, PODTUI_PUBLIC_URL="http://localhost:8765")
    finally:
        await runner.cleanup()
    assert code == 1
    assert checks["provider runpod"]["status"] == "ok"
    assert "cannot reach http://localhost:8765" in checks["public URL"]["message"]


async def test_bad_runpod_key_fails(tmp_path):
    fake = web.Application()
    fake.router.add_post("/graphql", lambda r: web.Response(status=401, text="Unauthorized"))
    runner, url = await serve(fake)
    try:
        code, checks = await doctor(tmp_path, RUNPOD_API_KEY="wrong", RUNPOD_API_BASE_URL=url)
    finally:
        await runner.cleanup()
    assert code == 1
    assert "rejected the API key" in checks["provider runpod"]["message"]


async def test_changed_dataset_fails(tmp_path):
    (tmp_path / "data" / "demo").mkdir(parents=True)
    code, checks = await doctor(tmp_path)
    assert code == 0
    demo = tmp_path / "data" / "demo" / "demo.csv"
    demo.write_text(demo.read_text() + "1,2,3,4,5,6,7\n")
    # the next start registers the new content as demo again; an extra registered file that changed fails
    extra = tmp_path / "extra.csv"
    extra.write_text("a\n1\n")
    from podtui.config import Settings
    from podtui.server.datasets import scan_dataset
    from podtui.store import Store

    store = await Store.open(Settings(data_dir=tmp_path / "data").store_path)
    scanned = scan_dataset(str(extra), "extra", 1 << 30, [])
    await store.save_dataset(scanned.dataset, scanned.root, scanned.manifest)
    await store.close()
    extra.write_text("a\n2\n3\n")
    code, checks = await doctor(tmp_path)
    assert code == 1
    assert "changed since the dataset was registered" in checks["dataset extra"]["message"]
