"""The dataset registry loses nothing: names are independent of content, `rm` takes a name out, and a launch
whose local dataset changed or vanished is refused before any pod is made."""

from __future__ import annotations

import asyncio
import json
import os

from click.testing import CliRunner

from podtui.cli import main


async def add(plane, path, name):
    r = await plane.http.post("/api/v1/datasets", json={"path": str(path), "name": name})
    assert r.status_code == 201, r.text
    return r.json()


async def test_two_names_with_the_same_content_both_stay(plane, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same bytes\n")
    b.write_text("same bytes\n")
    alpha = await add(plane, a, "alpha")
    beta = await add(plane, b, "beta")
    assert alpha["sha256"] == beta["sha256"] and alpha["id"] != beta["id"]
    listed = {d["name"]: d for d in (await plane.http.get("/api/v1/datasets")).json()}
    assert {"alpha", "beta"} <= set(listed)
    assert listed["alpha"]["source"] == str(a) and listed["beta"]["source"] == str(b)
    # adding the same name and content again re-points it, it does not add a second row
    again = await add(plane, a, "alpha")
    assert again["id"] == alpha["id"]
    assert [d["name"] for d in (await plane.http.get("/api/v1/datasets")).json()].count("alpha") == 1


async def test_rm_takes_the_name_out_and_runs_keep_their_dataset(plane, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a\n1\n")
    added = await add(plane, f, "gone-soon")
    r = await plane.http.post("/api/v1/runs", json={"dataset": "gone-soon", "gpu_types": ["local"],
                                                    "command": "true"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    r = await plane.http.delete("/api/v1/datasets/gone-soon")
    assert r.status_code == 200 and r.json()["removed_versions"] == 1
    assert "gone-soon" not in [d["name"] for d in (await plane.http.get("/api/v1/datasets")).json()]
    r = await plane.http.post("/api/v1/runs", json={"dataset": "gone-soon", "gpu_types": ["local"],
                                                    "command": "true"})
    assert r.status_code == 404 and "podtui datasets" in r.json()["error"]["message"]
    # the run still finds its dataset by id (its pod may be downloading it)
    record = await plane.store.find_dataset(added["id"])
    assert record.dataset.name == "gone-soon"
    assert (await plane.http.get(f"/api/v1/runs/{run_id}")).json()["dataset_id"] == added["id"]
    r = await plane.http.delete("/api/v1/datasets/gone-soon")
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found"
    # registering it again brings the name back
    await add(plane, f, "gone-soon")
    assert "gone-soon" in [d["name"] for d in (await plane.http.get("/api/v1/datasets")).json()]


async def test_a_changed_or_deleted_dataset_is_refused_before_any_pod(plane, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "part-1.txt").write_text("one\n")
    (folder / "part-2.txt").write_text("two\n")
    await add(plane, folder, "shards")
    provider = plane.runs.providers["local"]
    body = {"dataset": "shards", "gpu_types": ["local"], "command": "true"}

    (folder / "sub" / "part-1.txt").write_text("one, longer now\n")
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_changed"
    assert "sub/part-1.txt changed since the dataset was registered" in error["message"]
    assert f"podtui datasets add {folder} --name shards" in error["message"]
    assert "--dataset-changed-ok" in error["message"]
    assert provider.created == [] and await plane.store.list_runs() == []

    # --dataset-changed-ok: hashed again, registered anew under the name, and the run gets the new content
    r = await plane.http.post("/api/v1/runs", json={**body, "dataset_changed_ok": True})
    assert r.status_code == 201, r.text
    run = r.json()
    current = await plane.store.find_dataset("shards")
    assert run["dataset_id"] == current.dataset.id
    assert {e["path"]: e["size"] for e in current.manifest}["sub/part-1.txt"] == len("one, longer now\n")
    events = (await plane.http.get(f"/api/v1/runs/{run['id']}/events")).json()
    assert any(e["kind"] == "dataset" and "registered again" in e["message"] for e in events)

    (folder / "part-2.txt").unlink()
    created = len(provider.created)
    r = await plane.http.post("/api/v1/runs", json=body)
    assert r.status_code == 409 and "part-2.txt is gone" in r.json()["error"]["message"]
    for path in (folder / "sub" / "part-1.txt",):
        path.unlink()
    (folder / "sub").rmdir()
    folder.rmdir()
    r = await plane.http.post("/api/v1/runs", json={**body, "dataset_changed_ok": True})
    assert r.status_code == 409, r.text
    assert "cannot be used as it is now" in r.json()["error"]["message"]
    assert "podtui datasets rm shards" in r.json()["error"]["message"]
    await asyncio.sleep(0)
    assert len(provider.created) == created


async def test_cli_lists_json_and_removes(plane, tmp_path):
    f = tmp_path / "cli.csv"
    f.write_text("a\n1\n")
    await add(plane, f, "by-cli")
    env = {"PODTUI_SERVER": plane.url, "PODTUI_ADMIN_TOKEN": plane.control.admin_token,
           "PODTUI_CONFIG_FILE": str(tmp_path / "none.toml"), "NO_PROXY": "127.0.0.1"}

    def cli(*args: str):
        return CliRunner().invoke(main, list(args), env=env)

    result = await asyncio.to_thread(cli, "datasets", "--json")
    assert result.exit_code == 0, result.output
    listed = {d["name"]: d for d in json.loads(result.output)}
    entry = listed["by-cli"]
    assert entry["source"] == str(f) and entry["size_bytes"] == os.path.getsize(f) and entry["file_count"] == 1
    assert len(entry["sha256"]) == 64 and entry["cached_on"] == [] and entry["revision"] is None
    result = await asyncio.to_thread(cli, "datasets", "rm", "by-cli")
    assert result.exit_code == 0 and "removed by-cli" in result.output
    result = await asyncio.to_thread(cli, "datasets", "rm", "by-cli")
    assert result.exit_code == 1 and "no dataset named 'by-cli'" in result.output
    result = await asyncio.to_thread(cli, "datasets", "rm", "demo")
    assert result.exit_code == 1 and "demo is podtui's built-in dataset" in result.output, result.output


async def test_the_built_in_demo_is_neither_replaced_nor_removed(plane, tmp_path):
    # A new user registered a folder as `demo`: the demo's trainer then read a folder and printed a traceback,
    # and `datasets rm demo` removed the dataset `launch --help` says is always there.
    before = {d["name"]: d["id"] for d in (await plane.http.get("/api/v1/datasets")).json()}
    (tmp_path / "mine.txt").write_text("x\n")
    r = await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "mine.txt"), "name": "demo"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "reserved_name", r.text
    assert "built-in dataset" in r.json()["error"]["message"] and "--name NAME" in r.json()["error"]["message"]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "a.txt").write_text("x\n")  # the name taken from the folder's
    r = await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "demo")})
    assert r.status_code == 409 and r.json()["error"]["code"] == "reserved_name", r.text
    r = await plane.http.delete("/api/v1/datasets/demo")
    assert r.status_code == 409 and "cannot be removed" in r.json()["error"]["message"], r.text
    after = {d["name"]: d["id"] for d in (await plane.http.get("/api/v1/datasets")).json()}
    assert after["demo"] == before["demo"]
