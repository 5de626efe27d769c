"""Before a RunPod launch sends a local dataset through this machine's uplink: how long that takes and what the
pod costs meanwhile, from the uplink speed measured on earlier runs (a dataset's size over its run's data wait)."""

from __future__ import annotations

import statistics
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ..fmt import format_bytes, format_duration
from ..models import LaunchSpec, Run
from ..providers.base import ProviderError
from ..store import NotFound
from . import keys
from .responses import ApiError, json_response, read_model
from .sources import is_remote

LARGE_BYTES = 1024**3
"""From this size on a launch through the laptop is worth a warning."""
MIN_SAMPLE_BYTES = 8 * 1024 * 1024


class DataEstimate(BaseModel):
    """What getting a launch's dataset to its pod will take."""

    dataset: str
    size_bytes: int
    through_this_machine: bool
    """The pod gets it from the control plane (a local dataset with no volume cache)."""
    uplink_bytes_per_s: float | None = None
    """Measured on earlier runs (median); None when none moved enough to tell."""
    seconds: float | None = None
    usd: float | None = None
    """At the lowest listed price among the launch's GPU types."""
    message: str | None = None
    """What to tell the user before launching, when it matters."""


def _waited_for_data(run: Run) -> bool:
    """A RunPod run with no volume whose data wait ended: its dataset's size over that wait may be a sample."""
    wait = run.data_wait_s
    return run.provider == "runpod" and not run.spec.volume and run.data_wait_until is not None and \
        wait is not None and wait > 0


def measured_uplink(runs: list[Run], sizes: dict[str, tuple[str, int]]) -> float | None:
    """The median bytes/s of earlier RunPod runs whose local dataset came through this machine."""
    samples = []
    for run in runs:
        kind, size = sizes.get(run.dataset_id, ("", 0))
        wait = run.data_wait_s
        if not _waited_for_data(run) or wait is None or kind not in ("file", "dir") or size < MIN_SAMPLE_BYTES:
            continue
        samples.append(size / wait)
    return statistics.median(samples) if samples else None


def estimate_text(name: str, size: int, rate: float | None, usd: float | None) -> str:
    """`~1h20m at 2.4 MB/s, about $3.60 on this pod: push it to a volume first?`"""
    if rate is None:
        speed = "at an uplink speed not measured yet (no earlier run moved a large dataset)"
        return (f"dataset {name} ({format_bytes(size)}) goes through this machine's uplink to the pod, {speed}; "
                f"the pod bills while it waits. `podtui datasets push {name} --volume VOL` puts it on a network "
                "volume first, with no pod billing")
    seconds = size / rate
    cost = f", about ${usd:.2f} on this pod" if usd is not None else ""
    return (f"dataset {name} ({format_bytes(size)}) goes through this machine's uplink: ~{format_duration(seconds)} "
            f"at {format_bytes(rate)}/s{cost}: push it to a volume first? (`podtui datasets push {name} "
            "--volume VOL`, then launch with --volume VOL)")


async def estimate(request: web.Request) -> web.Response:
    """The data estimate of a launch, before it is made."""
    spec = await read_model(request, LaunchSpec)
    store = request.app[keys.STORE]
    runs_service = request.app[keys.RUNS]
    settings = request.app[keys.SETTINGS]
    try:
        record = await store.find_dataset(spec.dataset)
    except NotFound as exc:
        raise ApiError(404, "dataset_not_found", str(exc)) from None
    dataset = record.dataset
    provider_name = spec.provider or settings.default_provider
    through = not is_remote(dataset.kind) and provider_name != "local"
    answer = DataEstimate(dataset=dataset.name, size_bytes=dataset.size_bytes, through_this_machine=through)
    if not through:
        return json_response(answer)
    runs = [run for run in await store.list_runs() if _waited_for_data(run)]  # the datasets of these only
    sizes: dict[str, tuple[str, int]] = {}
    for run in runs:
        if run.dataset_id not in sizes:
            try:
                found = (await store.find_dataset(run.dataset_id)).dataset
                sizes[run.dataset_id] = (found.kind, found.size_bytes)
            except NotFound:
                continue
    rate = measured_uplink(runs, sizes)
    answer.uplink_bytes_per_s = rate
    price = await _lowest_price(runs_service.providers.get(provider_name), spec)
    if rate:
        answer.seconds = dataset.size_bytes / rate
        if price is not None:
            answer.usd = round(answer.seconds / 3600 * price, 2)
    cached = any(vol == spec.volume for _, vol, name in await store.volume_datasets() if name == dataset.name)
    if dataset.size_bytes >= LARGE_BYTES and not cached:
        answer.message = estimate_text(dataset.name, dataset.size_bytes, rate, answer.usd)
    return json_response(answer)


async def _lowest_price(provider: Any, spec: LaunchSpec) -> float | None:
    if provider is None:
        return None
    try:
        offers = await provider.list_offers()
    except ProviderError:
        return None
    prices = [o.secure_price if spec.cloud_type != "COMMUNITY" else o.community_price
              for o in offers if o.id in spec.gpu_types]
    known = [p for p in prices if p]
    return min(known) * spec.gpu_count if known else None
