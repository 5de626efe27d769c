"""Benchmark helper: a control plane in its own process, with N runs (and their tokens) made beforehand.

    python bench/plane_server.py DATA_DIR PORT RUNS [DATASET_PATH]

Prints one JSON line {"url", "admin_token", "runs": [[run_id, ingest_token], ...], "download_token"} once it
serves, then serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path

from podtui.config import Settings
from podtui.models import LaunchSpec, Run, RunStatus
from podtui.providers.base import PodState
from podtui.server.app import ControlPlane, ensure_demo_dataset, tune_gc
from podtui.server.datasets import scan_dataset
from podtui.server.downloads import issue_download_token
from podtui.store import Store
from podtui.tokens import hash_token, new_token


class PodsAlwaysRunning:
    """A provider whose pods are always running: the runs made here have no real pods."""

    name = "local"
    self_terminate_command = ""

    async def list_offers(self, refresh: bool = False) -> list[object]:
        return []

    async def get_pod(self, pod_id: str) -> PodState:
        return PodState(pod_id, "running", price_per_hour=0.0)

    async def terminate_pod(self, pod_id: str) -> None:
        pass

    async def stop_pod(self, pod_id: str) -> None:
        pass

    async def list_pods(self) -> list[PodState]:
        return []

    async def close(self) -> None:
        pass


async def main(data_dir: str, port: int, n_runs: int, dataset_path: str | None) -> None:
    settings = Settings(data_dir=Path(data_dir), port=port, log_level="WARNING")
    store = await Store.open(settings.store_path)
    await ensure_demo_dataset(settings, store)
    dataset = (await store.find_dataset("demo")).dataset
    if dataset_path:
        scanned = scan_dataset(dataset_path, "bench", 1 << 40, [])
        dataset = await store.save_dataset(scanned.dataset, scanned.root, scanned.manifest)
    runs = []
    for _ in range(n_runs):
        token = new_token()
        run = Run(id=secrets.token_hex(5), name="bench", provider="local", status=RunStatus.training,
                  spec=LaunchSpec(dataset=dataset.id, gpu_types=["local"], command="true"),
                  dataset_id=dataset.id, created_at=time.time())
        await store.create_run(run, hash_token(token))
        await store.update_run(run.id, pod_id=f"bench-{run.id}", started_at=time.time())
        runs.append([run.id, token])
    download = await issue_download_token(store, dataset.id, runs[0][0], 3600) if runs else None
    await store.close()
    plane = ControlPlane(settings, {"local": PodsAlwaysRunning()})  # type: ignore[dict-item]
    await plane.start()
    tune_gc()  # as `podtui serve` does
    print(json.dumps({"url": plane.url, "admin_token": plane.admin_token, "runs": runs,
                      "download_token": download}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None))
