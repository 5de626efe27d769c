"""Remote-source fetch benchmark (issue 25): a pod's fetch of an https dataset with podtui's fetcher
(bootstrap/fetch.py: Range-resumable, ETag and sha256 checked, into the content-addressed cache) against `curl -o`
of the same URL, in the same run, from the same server (aiohttp's FileResponse, sendfile, in its own process).

    python bench/fetch.py [--size-mib 2048] [--rounds 3]

Goal: podtui >= 0.9x curl. Checks the fetched file's sha256.
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


def write_file(path: Path, size: int) -> str:
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for i in range(0, size, 1 << 20):
            piece = (i.to_bytes(8, "big") + block)[: min(1 << 20, size - i)]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def main(size_mib: int, rounds: int) -> int:
    if shutil.which("curl") is None:
        raise SystemExit("needs curl (apt-get install curl)")
    with tempfile.TemporaryDirectory(prefix="podtui-bench-fetch-") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        size = size_mib * 1024 * 1024
        want = write_file(data, size)
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
            podtui_s, curl_s = [], []
            for _ in range(rounds):
                out = root / "curl.bin"
                started = time.perf_counter()
                subprocess.run(["curl", "-fsS", "-o", str(out), url], check=True)
                curl_s.append(time.perf_counter() - started)
                out.unlink()
                cache = root / "cache"
                plan = {"name": "bench", "key": "url-bench0000", "single": "data.bin", "parallel": 4,
                        "files": [{"path": "data.bin", "url": url, "size": size, "etag": etag_value,
                                   "sha256": None}]}
                (root / "plan.json").write_text(json.dumps(plan))
                started = time.perf_counter()
                subprocess.run([sys.executable, str(ROOT / "src/podtui/bootstrap/fetch.py"), str(root / "plan.json"),
                                str(root / "path.txt"), str(cache)], check=True, stdout=subprocess.DEVNULL)
                podtui_s.append(time.perf_counter() - started)
                fetched = Path((root / "path.txt").read_text())
                marker = json.loads((fetched.parent / ".complete").read_text())
                assert marker["sha256"]["data.bin"] == want, "the fetched file's sha256 differs"
                shutil.rmtree(cache)
        finally:
            server.terminate()
            server.wait(10)
    best_podtui, best_curl = min(podtui_s), min(curl_s)
    mib = size / 1024 / 1024
    print(json.dumps({"size_mib": size_mib, "podtui_s": [round(x, 2) for x in podtui_s],
                      "curl_s": [round(x, 2) for x in curl_s]}))
    ratio = best_curl / best_podtui
    print(f"podtui fetch {mib / best_podtui:.0f} MiB/s (sha256 checked), curl {mib / best_curl:.0f} MiB/s: "
          f"{ratio:.2f}x (goal >= 0.9x)")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.exit(main(args.size_mib, args.rounds))
