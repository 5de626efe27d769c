"""`podtui doctor`: passes on a good setup, fails with the right message on each broken one."""

import asyncio
import json
import os
import sys

import httpx
import pytest
from aiohttp import web

from tests.fakes.runpod_v2 import GPU_4090, FakeRunPodV2
from tests.support import free_port


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
    # it said "read (config file: ...)" of a file that is not there
    assert checks["settings"]["message"] == f"no config file at {tmp_path / 'c.toml'}: the defaults and PODTUI_* " \
        "variables"
    (tmp_path / "c.toml").write_text("log_level = 'INFO'\n")
    code, checks = await doctor(tmp_path)
    assert checks["settings"]["message"] == f"read from {tmp_path / 'c.toml'}"


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


@pytest.fixture
async def runpod(tmp_path):
    api = FakeRunPodV2(tmp_path / "fake")
    await api.start()
    yield api
    await api.stop()


def runpod_env(api, key):
    return {"RUNPOD_API_KEY": key, "PODTUI_RUNPOD_API_URL": api.url, "RUNPOD_API_BASE_URL": api.url}


async def test_runpod_key_accepted_shows_rate_limits_and_spot(tmp_path, runpod):
    code, checks = await doctor(tmp_path, PODTUI_PROVIDER="local", **runpod_env(runpod, "test-key"))
    assert code == 0, checks
    assert checks["provider runpod"]["status"] == "ok"
    assert "60/minute" in checks["provider runpod"]["message"] and "REST v2" in checks["provider runpod"]["message"]
    assert checks["runpod spot"]["status"] == "ok" and "early 2027" in checks["runpod spot"]["message"]
    assert "GET /v2/pods" in runpod.calls
    assert "a read-only key shows only at the first launch" in checks["provider runpod"]["message"]
    # --ssh needs an SSH key on the account (startSsh provisions those only)
    assert checks["runpod ssh keys"]["status"] == "warn" and "no SSH public key" in checks["runpod ssh keys"]["message"]
    assert "pod_end_failed" in checks["runpod pod end"]["message"]
    runpod.ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXGDN/SclOozk1xsDztpmhGiKkkrfQB9SKoO8dSIQQZ me@x"]
    code, checks = await doctor(tmp_path, PODTUI_PROVIDER="local", **runpod_env(runpod, "test-key"))
    assert checks["runpod ssh keys"]["status"] == "ok" and "1 SSH public key" in checks["runpod ssh keys"]["message"]


async def test_localhost_public_url_with_runpod_fails_for_push(tmp_path, runpod):
    code, checks = await doctor(tmp_path, PODTUI_PROVIDER="runpod", PODTUI_PUBLIC_URL="http://localhost:8765",
                                PODTUI_RUNPOD_PROXY_URL=runpod.url + "/{pod_id}-{port}",
                                **runpod_env(runpod, "test-key"))
    # no https public URL: pull mode, which needs no public URL; the one set is only a warning
    assert code == 0, checks
    assert checks["provider runpod"]["status"] == "ok"
    assert checks["connect"]["message"].startswith("pull")
    assert checks["RunPod proxy"]["status"] == "ok"
    assert checks["public URL"]["status"] == "warn"
    assert "cannot reach http://localhost:8765" in checks["public URL"]["message"]


async def test_pull_mode_fails_when_the_proxy_host_does_not_resolve(tmp_path, runpod):
    code, checks = await doctor(tmp_path, PODTUI_PROVIDER="runpod", **runpod_env(runpod, "test-key"),
                                PODTUI_RUNPOD_PROXY_URL="https://{pod_id}-{port}.proxy.invalid")
    assert code == 1
    assert checks["RunPod proxy"]["status"] == "fail" and "does not resolve" in checks["RunPod proxy"]["message"]


async def test_bad_runpod_key_fails(tmp_path, runpod):
    code, checks = await doctor(tmp_path, **runpod_env(runpod, "wrong"))
    assert code == 1
    assert "rejected the API key (401)" in checks["provider runpod"]["message"]


async def test_runpod_key_without_access_to_pods_fails_with_403(tmp_path, runpod):
    async with httpx.AsyncClient(base_url=runpod.url, headers={"Authorization": "Bearer test-key"}) as http:
        pod = (await http.post("/v2/pods", json={"name": "x", "image": "x", "gpu": {"id": GPU_4090}})).json()
    code, checks = await doctor(tmp_path, **runpod_env(runpod, runpod.pod_key(pod["id"])))
    assert code == 1
    assert "403" in checks["provider runpod"]["message"] and "API Keys" in checks["provider runpod"]["message"]


async def test_retired_graphql_warns_about_spot_only(tmp_path, runpod):
    runpod.graphql_down = True
    code, checks = await doctor(tmp_path, PODTUI_PROVIDER="local", **runpod_env(runpod, "test-key"))
    assert code == 0, checks  # a warning: on-demand pods do not need GraphQL
    assert checks["provider runpod"]["status"] == "ok"
    assert checks["runpod spot"]["status"] == "warn" and "spot launches will fail" in checks["runpod spot"]["message"]


async def test_changed_or_deleted_dataset_warns_with_what_to_do(tmp_path):
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
    # a changed dataset warns (launches with it are refused) and says both ways out: doctor does not fail forever
    assert code == 0, checks
    said = checks["dataset extra"]
    assert said["status"] == "warn" and "changed since the dataset was registered" in said["message"]
    assert f"podtui datasets add {extra} --name extra" in said["message"]
    assert "podtui datasets rm extra" in said["message"]
    extra.unlink()
    code, checks = await doctor(tmp_path)
    assert code == 0 and "extra.csv is gone" in checks["dataset extra"]["message"]


async def test_a_key_set_here_but_not_in_the_running_control_plane_is_named(tmp_path):
    from .test_local_runs import start_serve

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RUNPOD_API_KEY"}
    env.update(PODTUI_DATA_DIR=str(tmp_path / "data"), PODTUI_CONFIG_FILE=str(tmp_path / "c.toml"),
               PODTUI_PORT=str(port), NO_PROXY="127.0.0.1,localhost")
    serve = await asyncio.to_thread(start_serve, env)
    try:
        code, checks = await doctor(tmp_path, PODTUI_PORT=str(port), RUNPOD_API_KEY="set-in-this-shell")
    finally:
        serve.terminate()
        serve.wait(10)
    assert code == 1
    assert "started without it" in checks["RunPod key"]["message"] and "serve.pid" in checks["RunPod key"]["message"]


async def test_a_keymap_that_takes_quit_or_names_no_binding_fails(tmp_path):
    """Doctor said the settings were fine while `"run.new" = "q"` had taken over Quit."""
    (tmp_path / "c.toml").write_text('[keymap]\n"run.new" = "q"\n"run.nwe" = "m"\n')
    code, checks = await doctor(tmp_path)
    assert code == 1 and checks["keymap"]["status"] == "fail", checks
    message = checks["keymap"]["message"]
    assert "'run.new'" in message and "'app.quit'" in message and "takes q" in message
    assert "'run.nwe'" in message and "did you mean 'run.new'" in message
    (tmp_path / "c.toml").write_text('[keymap]\n"run.terminate" = "ctrl+x"\n')
    code, checks = await doctor(tmp_path)
    assert checks["keymap"]["status"] == "ok", checks
