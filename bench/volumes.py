"""Volumes benchmark (issue 25): the same local dataset launched twice with `--volume` on the local provider (a
volume is a folder under the data dir, the same contract as a RunPod network volume), side by side in one run:

- first run: the pod fetches the dataset from the control plane into `<volume>/podtui/datasets/<key>/`
  (sha256 checked, `.complete` last);
- second run: the pod finds it whole there.

For each: bytes the pod moved, its data wait (downloading -> training) and pod start -> training (the pod's
process created -> its first `training` report).

    python bench/volumes.py [--size-mib 2048]

Goals: second run moves 0 bytes and starts training <= 3 s after its pod started, beside the first run's full
transfer. Checks both runs saw the same bytes (the trainer prints the sha256 of the file it was given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_dataset

from podtui.config import Settings
from podtui.server.app import ControlPlane

ENDED = {"succeeded", "failed", "lost", "terminated"}
SHA = ("python3 -c \"import hashlib,os;h=hashlib.sha256();f=open(os.environ['PODTUI_DATASET_PATH'],'rb');"
       "[h.update(b) for b in iter(lambda: f.read(1<<20), b'')];print('sha', h.hexdigest())\"")


async def one_run(http: httpx.AsyncClient) -> dict[str, object]:
    r = await http.post("/api/v1/runs", json={"dataset": "bench", "gpu_types": ["local"], "command": SHA,
                                              "volume": "bench", "keep_alive_s": 0})
    r.raise_for_status()
    run_id = r.json()["id"]
    while True:
        run = (await http.get(f"/api/v1/runs/{run_id}")).json()
        if run["status"] in ENDED:
            break
        await asyncio.sleep(0.1)
    events = (await http.get(f"/api/v1/runs/{run_id}/events")).json()
    lines = (await http.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 5000})).json()["lines"]
    said = " | ".join(e["message"] for e in events if e["kind"] == "dataset")
    moved = 0 if "0 bytes moved" in said else None
    match = re.search(r"control plane on volume bench: (\S+ \S+) in ([\d.]+) s", said)
    return {"status": run["status"], "moved": moved if moved is not None else (match.group(1) if match else said),
            "data_wait_s": run["data_wait_s"], "start_to_training_s":
                None if run["data_wait_until"] is None else run["data_wait_until"] - run["started_at"],
            "sha": next((x["text"][4:] for x in lines if x["text"].startswith("sha ")), None)}


async def main(size_mib: int) -> int:
    with tempfile.TemporaryDirectory(prefix="podtui-bench-volumes-") as tmp:
        root = Path(tmp)
        os.environ["PODTUI_CONFIG_FILE"] = str(root / "none.toml")
        data = root / "bench.bin"
        want = write_dataset(data, size_mib * 1024 * 1024)
        settings = Settings(data_dir=root / "data", port=0, log_level="WARNING", supervisor_interval_s=0.5,
                            provider="local")
        control = ControlPlane(settings)
        await control.start()
        try:
            async with httpx.AsyncClient(base_url=control.url, timeout=600, trust_env=False,
                                         headers={"Authorization": f"Bearer {control.admin_token}"}) as http:
                (await http.post("/api/v1/volumes", json={"name": "bench", "provider": "local"})).raise_for_status()
                started = time.perf_counter()
                (await http.post("/api/v1/datasets", json={"path": str(data), "name": "bench"})).raise_for_status()
                registered = time.perf_counter() - started
                first = await one_run(http)
                second = await one_run(http)
        finally:
            await control.stop()
    print(json.dumps({"size_mib": size_mib, "register_s": round(registered, 2), "first": first, "second": second},
                     indent=2))
    ok = (first["status"] == second["status"] == "succeeded" and first["sha"] == second["sha"] == want
          and second["moved"] == 0 and (second["start_to_training_s"] or 99) <= 3.0)
    print(f"second run: {second['moved']} bytes moved, pod start -> training "
          f"{second['start_to_training_s']:.2f} s (first run: {first['moved']} moved, "
          f"{first['start_to_training_s']:.2f} s); goal {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    sys.exit(asyncio.run(main(parser.parse_args().size_mib)))
