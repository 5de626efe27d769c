"""Pull-mode benchmarks (issue 12), through the fake of RunPod's HTTPS proxy (tests/fakes/runpod_proxy.py), each
with its peer measured in the same run:

- upload: a 90 MiB dataset into a pod's port as the control plane does it (32 MiB pieces, resumable, sha256
  checked by the real agent code in its own process) vs `curl -T` of the same file, in one request, to a plain
  aiohttp upload endpoint behind the same proxy; checks the pod's copy is byte-identical;
- latency: a loss line printed in a RunPod pod (fake API, execute mode) -> the control plane's live feed, where
  the dashboard's chart takes it (p50/p95 over 200 lines, 0.1 s apart); checks every printed step arrived.

    python bench/pull.py [--only upload|latency]

Goals: upload >= 0.8x curl -T; latency p95 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port, percentile  # noqa: E402
from tests.fakes.runpod_proxy import FakeRunPodProxy  # noqa: E402
from tests.fakes.runpod_v2 import GPU_4090, FakeRunPodV2  # noqa: E402

POD_PORT_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from agent.links import PullLink
from agent.pod_port import PodPort
port = PodPort(sys.argv[2], "bench-token", PullLink())
port.serve(int(sys.argv[3]))
while True:
    time.sleep(3600)
"""


async def upload_bench(work: Path) -> None:
    from podtui.server.puller import PodLink, Upload, send_input

    data = work / "data.bin"
    with open(data, "wb") as f:
        for _ in range(90):  # under the proxy's 100 MB body limit, so curl can send it in one request
            f.write(os.urandom(1 << 20))
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    size = data.stat().st_size

    api = FakeRunPodV2(work / "fake")  # not started: the proxy only asks it which pods run with which ports
    proxy = FakeRunPodProxy(api)
    await proxy.start()
    pod_port, peer_port = free_port(), free_port()
    api.pods["pod"] = {"status": "RUNNING", "ports": [f"{pod_port}/http"]}
    api.pods["peer"] = {"status": "RUNNING", "ports": [f"{peer_port}/http"]}
    pod_home = work / "pod"
    pod_home.mkdir()
    pod = subprocess.Popen([sys.executable, "-c", POD_PORT_SCRIPT, str(ROOT / "src/podtui/bootstrap"),
                            str(pod_home), str(pod_port)])

    async def sink(request: web.Request) -> web.Response:  # the peer's endpoint: a plain streaming upload
        with open(work / "peer.bin", "wb") as out:
            async for chunk in request.content.iter_chunked(1 << 20):
                out.write(chunk)
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=200 * 1024 * 1024)
    app.router.add_put("/upload", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", peer_port).start()
    try:
        await asyncio.sleep(0.5)
        link = PodLink(proxy.template.format(pod_id="pod", port=pod_port), "bench-token")
        ours = []
        peers = []
        for attempt in range(3):
            slot = f"data-{attempt}"
            started = time.perf_counter()
            async for _ in send_input(link, Upload(slot, size, sha, path=str(data)), 0, 32 * 1024 * 1024):
                pass
            answer = await link.call("POST", f"/v1/inputs/{slot}/done", content=b"{}",
                                     params={"sha256": sha, "size": size})
            ours.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            if attempt == 0:  # before the peer's single large request
                our_largest = proxy.largest_body
            peer_url = proxy.template.format(pod_id="peer", port=peer_port) + "/upload"
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec("curl", "-sS", "-f", "-T", str(data), peer_url,
                                                        stdout=asyncio.subprocess.DEVNULL)
            assert await proc.wait() == 0
            peers.append(time.perf_counter() - started)
        await link.close()
        same = hashlib.sha256((pod_home / "inputs" / "data-0").read_bytes()).hexdigest() == sha
        mib = size / (1 << 20)
        best_ours, best_peer = mib / min(ours), mib / min(peers)
        print(f"upload {mib:.0f} MiB through the fake proxy (best of 3): podtui {best_ours:.0f} MiB/s "
              f"(32 MiB pieces + sha256 on the pod), curl -T {best_peer:.0f} MiB/s -> {best_ours / best_peer:.2f}x "
              f"(goal >= 0.8); podtui's largest request {our_largest >> 20} MiB; pod copy identical: {same}")
    finally:
        pod.kill()
        await runner.cleanup()
        await proxy.stop()


async def latency_bench(work: Path) -> None:
    from podtui.client import Client
    from podtui.config import Settings
    from podtui.server.app import ControlPlane

    api = FakeRunPodV2(work / "fake", execute=True)
    api.rate_limits = [("minute", 100_000, 60)]
    await api.start()
    proxy = FakeRunPodProxy(api)
    await proxy.start()
    settings = Settings(data_dir=work / "plane", port=free_port(), runpod_api_key="test-key", provider="runpod",
                        runpod_api_url=api.url, runpod_pod_api_url=api.url, runpod_proxy_url=proxy.template,
                        pod_port=free_port(), supervisor_interval_s=1.0)
    plane = ControlPlane(settings)
    await plane.start()
    client = Client(plane.url, plane.admin_token)
    steps = 200
    command = (f"python3 -c \"import time\nfor i in range({steps}):\n    print(f'step={{i}} loss={{1/(i+1)}}', "
               f"flush=True); time.sleep(0.1)\"")
    try:
        from podtui.feed import MetricsAdded
        from podtui.models import LaunchSpec

        run = await client.launch(LaunchSpec(dataset="demo", gpu_types=[GPU_4090], command=command))
        delays: dict[int, float] = {}
        deadline = time.time() + 120
        async for _, entry in client.events(run_id=run.id):
            now = time.time()
            if isinstance(entry, MetricsAdded):
                for point in entry.points:
                    if point.name == "loss":
                        delays[point.step] = now - point.ts
            if len(delays) >= steps or time.time() > deadline:
                break
        values = list(delays.values())
        print(f"loss line -> control plane feed, pull through the fake proxy: p50 {percentile(values, 50) * 1000:.0f} "
              f"ms, p95 {percentile(values, 95) * 1000:.0f} ms (goal p95 <= 1500 ms); {len(delays)}/{steps} steps "
              "arrived")
        await client.terminate(run.id)
    finally:
        await client.close()
        await plane.stop()
        await proxy.stop()
        await api.stop()


async def main() -> None:
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["upload", "latency"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "upload"):
            (work / "u").mkdir()
            await upload_bench(work / "u")
        if args.only in (None, "latency"):
            (work / "l").mkdir()
            await latency_bench(work / "l")


if __name__ == "__main__":
    asyncio.run(main())
