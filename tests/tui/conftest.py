"""The dashboard's tests run the app with its embedded control plane, and leave it without the quit dialog: a
local pod still bringing its outputs home (keep-alive) outlived the test by up to 30 min. Each test's local pods
are ended after it, by the local provider itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from podtui.providers.local import LocalProvider


async def _end_local_pods(pods_dirs: list[Path]) -> None:
    for pods_dir in pods_dirs:
        provider = LocalProvider(pods_dir, grace_s=1.0)
        for pod in await provider.list_pods():  # the ones still running
            await provider.terminate_pod(pod.pod_id)


@pytest.fixture(autouse=True)
def no_local_pod_outlives_the_test(tmp_path: Path) -> Iterator[None]:
    yield
    pods_dirs = [p for p in tmp_path.glob("**/pods") if p.is_dir() and any(p.glob("*/pod.json"))]
    if pods_dirs:
        asyncio.run(_end_local_pods(pods_dirs))
