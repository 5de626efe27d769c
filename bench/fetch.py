"""Remote-source fetch benchmark (issue 25): a pod's fetch of an https dataset with podtui's fetcher
(bootstrap/fetch.py: Range-resumable, ETag and sha256 checked, into the content-addressed cache) against `curl -o`
of the same URL, in the same run, from the same server (aiohttp's FileResponse, sendfile, in its own process).

    python bench/fetch.py [--size-mib 2048] [--rounds 3] [--fetcher PATH]

Goal: podtui >= 0.9x curl. Checks the fetched file's sha256 and curl's size. The two take turns going first, each
after the writes before it are synced; best and median of each, and their CPU seconds (steadier than the time on a
shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_dataset

from podtui.server.runs import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import sys
from aiohttp import web
path = sys.argv[1]
async def get(request):
    return web.FileResponse(path)
app = web.Application()
app.router.add_route("*", "/data.bin", get)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def main(size_mib: int, rounds: int, fetcher: Path) -> int:
    if shutil.which("curl") is None:
        raise SystemExit("needs curl (apt-get install curl)")
    with tempfile.TemporaryDirectory(prefix="podtui-bench-fetch-") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        size = size_mib * 1024 * 1024
        want = write_dataset(data, size)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port)])
        url = f"http://127.0.0.1:{port}/data.bin"
        try:
            for _ in range(100):
                if subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-r", "0-0", url],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            etag = subprocess.run(["curl", "-fsSI", url], capture_output=True, text=True).stdout
            etag_value = next((line.split(":", 1)[1].strip() for line in etag.splitlines()
                               if line.lower().startswith("etag:")), None)
            podtui_s, curl_s, podtui_cpu, curl_cpu = [], [], [], []
            for n in range(rounds):
                for side in ("curl", "podtui") if n % 2 == 0 else ("podtui", "curl"):  # each goes first in turn
                    os.sync()  # the last one's writes are not this one's to wait for
                    time.sleep(1)
                    if side == "curl":
                        out = root / "curl.bin"
                        seconds, cpu = timed(["curl", "-fsS", "-o", str(out), url])
                        assert out.stat().st_size == size, "curl did not get the whole file"
                        out.unlink()
                        curl_s.append(seconds)
                        curl_cpu.append(cpu)
                        continue
                    cache = root / "cache"
                    plan = {"name": "bench", "key": "url-bench0000", "single": "data.bin", "parallel": 4,
                            "files": [{"path": "data.bin", "url": url, "size": size, "etag": etag_value,
                                       "sha256": None}]}
                    (root / "plan.json").write_text(json.dumps(plan))
                    seconds, cpu = timed([sys.executable, str(fetcher),
                                          str(root / "plan.json"), str(root / "path.txt"), str(cache)])
                    fetched = Path((root / "path.txt").read_text())
                    marker = json.loads((fetched.parent / ".complete").read_text())
                    assert marker["sha256"]["data.bin"] == want, "the fetched file's sha256 differs"
                    assert fetched.stat().st_size == size
                    shutil.rmtree(cache)
                    podtui_s.append(seconds)
                    podtui_cpu.append(cpu)
        finally:
            server.terminate()
            server.wait(10)
    mib = size / 1024 / 1024
    print(json.dumps({"size_mib": size_mib, "podtui_s": [round(x, 2) for x in podtui_s],
                      "curl_s": [round(x, 2) for x in curl_s], "podtui_cpu_s": [round(x, 2) for x in podtui_cpu],
                      "curl_cpu_s": [round(x, 2) for x in curl_cpu]}))
    best, median = min(curl_s) / min(podtui_s), statistics.median(curl_s) / statistics.median(podtui_s)
    print(f"podtui fetch best {mib / min(podtui_s):.0f} MiB/s, median {mib / statistics.median(podtui_s):.0f} MiB/s "
          f"(sha256 checked; CPU {statistics.median(podtui_cpu):.2f} s); curl best {mib / min(curl_s):.0f} MiB/s, "
          f"median {mib / statistics.median(curl_s):.0f} MiB/s (CPU {statistics.median(curl_cpu):.2f} s)")
    print(f"podtui / curl: {best:.2f}x best to best, {median:.2f}x median to median (goal >= 0.9x)")
    return 0 if best >= 0.9 else 1


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a command: its wall time and its CPU time (user + system, its threads and children)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed ({status})")
    return seconds, usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetcher", type=Path, default=ROOT / "src/podtui/bootstrap/fetch.py",
                        help="another version of bootstrap/fetch.py, to compare (e.g. `git show REV:PATH`)")
    args = parser.parse_args()
    sys.exit(main(args.size_mib, args.rounds, args.fetcher))
