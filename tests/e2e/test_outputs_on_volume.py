"""`launch --volume VOL --outputs-on-volume` on the local provider: the command writes its outputs straight to
`<volume>/podtui/outputs/<run id>/`, nothing comes home by itself (push or pull), `podtui outputs RUN` says where
they are, and `podtui outputs RUN --to DIR` fetches them (sha256 recorded) and copies them out."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

ENDED = {"succeeded", "failed", "lost", "terminated"}
WRITE = ("python3 -c \"import os;d=os.environ['PODTUI_OUTPUT_DIR'];os.makedirs(d+'/sub',exist_ok=True);"
         "open(d+'/model.bin','wb').write(bytes(range(256))*4000);open(d+'/sub/note.txt','w').write('hi');"
         "print('wrote to', d)\"")


async def launch(plane, **spec):
    body = {"dataset": "demo", "gpu_types": ["local"], "command": WRITE, "keep_alive_s": 120, "volume": "keep",
            "outputs_on_volume": True, **spec}
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def succeeded(plane, run_id):
    run = await plane.wait_status(run_id, ENDED, timeout=120)
    events = (await plane.http.get(f"/api/v1/runs/{run_id}/events")).json()
    assert run["status"] == "succeeded", (run["status_reason"], events)
    return run, events


@pytest.mark.parametrize("connect", ["push", "pull"])
async def test_outputs_stay_on_the_volume_and_are_fetched_on_request(local_plane, tmp_path, connect):
    from click.testing import CliRunner

    from podtui.cli import main

    plane = local_plane
    assert (await plane.http.post("/api/v1/volumes", json={"name": "keep", "provider": "local"})).status_code == 201
    run = await launch(plane, connect=connect)
    rid = run["id"]
    assert run["spec"]["outputs_on_volume"] is True
    _, events = await succeeded(plane, rid)
    folder = plane.control.settings.data_dir / "volumes" / "keep" / "podtui" / "outputs" / rid
    model = bytes(range(256)) * 4000
    assert (folder / "model.bin").read_bytes() == model and (folder / "sub" / "note.txt").read_text() == "hi"
    said = " ".join(e["message"] for e in events)
    assert f"outputs written to {folder}/ (they stay there)" in said
    # the pod ended at once: nothing was waiting to come home through this machine
    lines = (await plane.http.get(f"/api/v1/runs/{rid}/logs", params={"limit": 1000})).json()["lines"]
    assert any("outputs stay on the volume: 2 file(s)" in line["text"] for line in lines), lines[-5:]

    page = (await plane.http.get(f"/api/v1/runs/{rid}/outputs")).json()
    assert page["files"] == [] and page["summary"]["state"] == "none"
    assert not (plane.control.settings.data_dir / "outputs" / rid).exists()
    vol = page["volume"]
    assert vol["volume"] == "keep" and vol["path"] == f"{folder}/" and vol["location"] == f"{folder}/"
    assert [(f["path"], f["size"]) for f in vol["files"]] == [("model.bin", len(model)), ("sub/note.txt", 2)]
    r = await plane.http.post(f"/api/v1/runs/{rid}/outputs/sync")
    assert r.status_code == 409 and f"`podtui outputs {rid} --to DIR`" in r.json()["error"]["message"]

    env = {"PODTUI_SERVER": plane.url, "PODTUI_ADMIN_TOKEN": plane.control.admin_token,
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "NO_PROXY": "127.0.0.1"}
    out = await asyncio.to_thread(CliRunner().invoke, main, ["outputs", rid], env=env)
    assert out.exit_code == 0, out.output
    assert "ON THE VOLUME" in out.output and "model.bin" in out.output
    assert f"outputs on volume keep: 2 files, 1000.0 KiB in {folder}/" in out.output

    copy = tmp_path / "copy"
    out = await asyncio.to_thread(CliRunner().invoke, main, ["outputs", rid, "--to", str(copy)], env=env)
    assert out.exit_code == 0, out.output
    assert (copy / "model.bin").read_bytes() == model and (copy / "sub" / "note.txt").read_text() == "hi"
    page = (await plane.http.get(f"/api/v1/runs/{rid}/outputs")).json()
    home = {f["path"]: f["sha256"] for f in page["files"]}
    assert home == {"model.bin": hashlib.sha256(model).hexdigest(), "sub/note.txt": hashlib.sha256(b"hi").hexdigest()}
    # a second fetch moves nothing
    async with plane.http.stream("POST", f"/api/v1/runs/{rid}/outputs/fetch") as answer:
        result = [json.loads(line) async for line in answer.aiter_lines() if line.strip()][-1]["result"]
    assert (result["fetched"], result["skipped"], result["bytes"]) == (0, 2, 0)
    # deleting the volume asks with the outputs it takes with it named (they are nowhere else)
    out = await asyncio.to_thread(CliRunner().invoke, main, ["volumes", "rm", "keep", "--provider", "local"],
                                  input="n\n", env=env)
    assert out.exit_code == 0 and "kept" in out.output, out.output
    assert f"So do the outputs of 1 run(s) written to it, kept nowhere else ({rid})" in out.output
    assert f"`podtui outputs {rid} --to DIR` copies them here first" in out.output
    assert (folder / "model.bin").is_file()


async def test_outputs_on_volume_needs_a_volume(local_plane, tmp_path):
    from click.testing import CliRunner

    from podtui.cli import main

    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                          "outputs_on_volume": True})
    assert r.status_code == 422 and "--volume NAME" in r.json()["error"]["message"], r.text
    assert await local_plane.store.list_runs() == []
    env = {"PODTUI_SERVER": local_plane.url, "PODTUI_ADMIN_TOKEN": local_plane.control.admin_token,
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "NO_PROXY": "127.0.0.1"}
    out = await asyncio.to_thread(CliRunner().invoke, main, ["launch", "--dataset", "demo", "--provider", "local",
                                                             "--outputs-on-volume"], env=env)
    assert out.exit_code == 2 and "--volume NAME" in out.output and "Traceback" not in out.output
    # a run without it has nothing to fetch from a volume
    r = await local_plane.http.post("/api/v1/runs", json={"dataset": "demo", "gpu_types": ["local"],
                                                          "command": "true", "keep_alive_s": 0})
    rid = r.json()["id"]
    r = await local_plane.http.post(f"/api/v1/runs/{rid}/outputs/fetch")
    assert r.status_code == 409 and "no --outputs-on-volume" in r.json()["error"]["message"]
    await local_plane.wait_status(rid, ENDED, timeout=60)


RESUMING = ("python3 -c \"import os,time;d=os.environ['PODTUI_OUTPUT_DIR'];c=os.path.join(d,'ckpt.txt');"
            "print('volume', os.environ.get('PODTUI_VOLUME'), 'attempt', os.environ['PODTUI_ATTEMPT'], flush=True);"
            "print('resumed from', open(c).read(), flush=True) if os.path.exists(c) else "
            "(open(c,'w').write('step 7'), print('checkpoint written', flush=True), time.sleep(120))\"")


async def test_a_replacement_pod_mounts_the_volume_and_finds_the_outputs_there(local_plane):
    import os
    import signal

    from .test_retries_local import pod_groups, wait_for

    plane = local_plane
    await plane.http.post("/api/v1/volumes", json={"name": "keep", "provider": "local"})
    run = await launch(plane, command=RESUMING, retries=1, keep_alive_s=0)
    rid = run["id"]

    async def written():
        lines = (await plane.http.get(f"/api/v1/runs/{rid}/logs", params={"limit": 1000})).json()["lines"]
        found = any(line["text"] == "checkpoint written" for line in lines)
        return (await plane.http.get(f"/api/v1/runs/{rid}")).json() if found else None

    first = await wait_for(written, 60, "the first attempt's checkpoint")
    for pgid in pod_groups(plane, first["pod_id"]):
        os.killpg(pgid, signal.SIGKILL)
    done = await plane.wait_status(rid, ENDED, timeout=180)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done["status_reason"]
    lines = [x["text"] for x in (await plane.http.get(f"/api/v1/runs/{rid}/logs", params={"limit": 1000})).json()[
        "lines"]]
    volume = plane.control.settings.data_dir / "volumes" / "keep"
    assert f"volume {volume} attempt 2" in lines and "resumed from step 7" in lines, lines
