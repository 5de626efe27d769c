"""Outputs benchmark (issue 13): a 1 GiB output file from a pod to the control plane, with its peer measured in the
same run on the same machine:

- podtui: the real agent code (`OutputSender`, in its own process, as in a pod) sends the file from its outputs
  folder to a control plane in its own process (bench/plane_server.py): offer, 64 MiB pieces, sha256 computed on
  both sides as the bytes pass, the file put in place only once they match;
- peer: `curl -T` of the same file, in one request, to a plain aiohttp upload endpoint (its own process) that
  writes the body to a file on the same disk.

    python bench/outputs.py [--size-mib 1024] [--rounds 3]

Goal: podtui >= 0.9x curl -T. Checks the copy that came home is byte-identical. A third figure, for diagnosis only,
is podtui's transport with sha256 switched off on both sides (no check at all: never a mode podtui runs in), which
shows what the two sha256 passes cost on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port, start_plane  # noqa: E402

POD_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import agent.outputs
import os
if os.environ.get("BENCH_NO_SHA256"):  # diagnosis only: what the transport does without the pod's sha256 pass
    agent.outputs.hash_range = lambda path, offset, length, digest, done: done.append(length)

class Pod:
    output_dir = sys.argv[2]
    signalled = False
    def note(self, text):
        print(text, file=sys.stderr)

sender = agent.outputs.OutputSender(Pod(), sys.argv[3], sys.argv[4], sys.argv[5])
started = time.perf_counter()
sent, failed = sender.sync(True, time.time() + 600)
print(json.dumps({"seconds": time.perf_counter() - started, "sent": sent, "failed": failed}))
"""

NO_SHA256_PLANE = """
import runpy, sys
import podtui.server.outputs as o
o._hash_all = lambda digest, blocks: None  # diagnosis only: the control plane's sha256 pass switched off
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

SINK_SCRIPT = """
import sys
from aiohttp import web

async def sink(request):
    with open(sys.argv[1], "wb") as out:
        async for chunk in request.content.iter_chunked(1 << 20):
            out.write(chunk)
    return web.json_response({"ok": True})

app = web.Application(client_max_size=1 << 40)
app.router.add_put("/upload", sink)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def wait_for_port(port: int) -> None:
    import socket

    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podtui-bench-outputs-", dir=os.environ.get("BENCH_DIR")))
    outputs = work / "pod" / "outputs"
    outputs.mkdir(parents=True)
    data = outputs / "model.bin"
    with open(data, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha, size = digest.hexdigest(), data.stat().st_size
    plane, info = start_plane(work / "plane", runs=args.rounds)
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", NO_SHA256_PLANE, str(ROOT / "bench" / "plane_server.py"),
                             str(work / "bare"), str(bare_port), str(args.rounds)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PODTUI_CONFIG_FILE": str(work / "none.toml")})
    assert bare.stdout is not None
    bare_info = json.loads(bare.stdout.readline())
    unchecked: list[float] = []
    peer_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK_SCRIPT, str(work / "peer.bin"), str(peer_port)])
    ours: list[float] = []
    peers: list[float] = []
    identical = True
    try:
        wait_for_port(peer_port)
        def send(where: dict, attempt: int, env: dict[str, str]) -> float:
            run_id, token = where["runs"][attempt]
            out = subprocess.run([sys.executable, "-c", POD_SCRIPT, str(ROOT / "src/podtui/bootstrap"),
                                  str(outputs), where["url"], run_id, token], capture_output=True, text=True,
                                 check=True, env=env)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["sent"] == 1 and result["failed"] == 0, (result, out.stderr)
            return float(result["seconds"])

        def unchecked_once(attempt: int) -> None:
            unchecked.append(send(bare_info, attempt, {**os.environ, "BENCH_NO_SHA256": "1"}))
            shutil.rmtree(work / "bare" / "outputs" / bare_info["runs"][attempt][0])

        def ours_once(attempt: int) -> bool:
            run_id = info["runs"][attempt][0]
            ours.append(send(info, attempt, dict(os.environ)))
            landed = work / "plane" / "outputs" / run_id / "model.bin"
            check = hashlib.sha256()
            with open(landed, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    check.update(block)
            same = check.hexdigest() == sha and landed.stat().st_size == size
            shutil.rmtree(landed.parent)  # both sides write a new file each round and delete it after
            return same

        def peer_once() -> None:
            started = time.perf_counter()
            subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-T", str(data),
                            f"http://127.0.0.1:{peer_port}/upload"], check=True)
            peers.append(time.perf_counter() - started)
            (work / "peer.bin").unlink(missing_ok=True)

        for attempt in range(args.rounds):  # alternating who goes first: the page cache favours the second
            if attempt % 2:
                peer_once()
                identical = ours_once(attempt) and identical
            else:
                identical = ours_once(attempt) and identical
                peer_once()
            unchecked_once(attempt)
        mib = size / (1 << 20)
        best_ours, best_peer = mib / min(ours), mib / min(peers)
        print(f"output upload, {mib:.0f} MiB file, best of {args.rounds}: podtui {best_ours:.0f} MiB/s "
              f"(64 MiB pieces, sha256 on both sides, placed once it matches), curl -T to a plain aiohttp endpoint "
              f"{best_peer:.0f} MiB/s -> {best_ours / best_peer:.2f}x (goal >= 0.9); all rounds: podtui "
              f"{', '.join(f'{mib / s:.0f}' for s in ours)}, curl {', '.join(f'{mib / s:.0f}' for s in peers)} "
              f"MiB/s; copy home identical: {identical}")
        print(f"diagnosis: podtui's transport with sha256 off on both sides {mib / min(unchecked):.0f} MiB/s "
              f"({mib / min(unchecked) / best_peer:.2f}x curl): the rest of the gap is the two sha256 passes "
              f"(pod and control plane) on this machine's {os.cpu_count()} cores")
    finally:
        bare.kill()
        sink.kill()
        plane.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
