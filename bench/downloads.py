"""Dataset download throughput through the control plane vs nginx (sendfile) on loopback, and /healthz
latency while two downloads run.

    python bench/downloads.py [--size-gib 2] [--repeat 3]

Needs nginx and curl (apt-get install nginx curl). Prints throughput of each, their ratio, and /healthz p50/p99.
Goals (issue 2): >= 0.95x nginx; /healthz p99 < 20 ms during two downloads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import free_port, percentile, start_plane

NGINX_CONF = """
worker_processes 1;
user root;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {data}; }}
    }}
}}
"""


def curl_speed(url: str, headers: list[str] | None = None) -> float:
    """Bytes per second of one full download to /dev/null."""
    cmd = ["curl", "-fsS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{speed_download}", url]
    for h in headers or []:
        cmd[1:1] = ["-H", h]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out)


def latency_during_downloads(probe_url: str, download_url: str, headers: list[str], repeat: int) -> list[float]:
    """Milliseconds of small GETs to probe_url while two full downloads of download_url run (repeat times)."""
    latencies: list[float] = []
    done = threading.Event()

    def two_downloads() -> None:
        for _ in range(repeat):
            threads = [threading.Thread(target=curl_speed, args=(download_url, headers)) for _ in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        done.set()

    runner = threading.Thread(target=two_downloads)
    with httpx.Client(trust_env=False) as client:
        client.get(probe_url)
        runner.start()
        while not done.is_set():
            start = time.perf_counter()
            client.get(probe_url)
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)
    runner.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("nginx") or not shutil.which("curl"):
        raise SystemExit("needs nginx and curl: apt-get install -y nginx curl")
    work = Path(tempfile.mkdtemp(prefix="podtui-bench-"))
    work.chmod(0o755)  # nginx's worker runs as another user
    data = work / "data"
    data.mkdir()
    big = data / "big.bin"
    chunk = os.urandom(1 << 24)
    with big.open("wb") as f:
        for _ in range(int(args.size_gib * 1024**3) // len(chunk)):
            f.write(chunk)
    size = big.stat().st_size
    (work / "tmp").mkdir()
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(root=work, port=port, data=data))
    nginx = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"])
    plane, info = start_plane(work / "plane", runs=1, dataset=big)
    try:
        time.sleep(0.5)
        ours_url = f"{info['url']}/api/datasets/download"
        auth = [f"Authorization: Bearer {info['download_token']}"]
        nginx_url = f"http://127.0.0.1:{port}/big.bin"
        curl_speed(nginx_url)  # warm the page cache
        ours, theirs = [], []
        for _ in range(args.repeat):
            theirs.append(curl_speed(nginx_url))
            ours.append(curl_speed(ours_url, auth))
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"file: {size / 1024**3:.2f} GiB, {args.repeat} downloads each, median")
        print(f"nginx sendfile : {t / 1024**2:8.0f} MiB/s")
        print(f"podtui         : {o / 1024**2:8.0f} MiB/s")
        print(f"ratio          : {o / t:8.3f}x nginx (goal >= 0.95)")

        ours_lat = latency_during_downloads(info["url"] + "/healthz", ours_url, auth, args.repeat)
        (data / "ping.txt").write_text("ok")
        nginx_lat = latency_during_downloads(f"http://127.0.0.1:{port}/ping.txt", nginx_url, [], args.repeat)
        for label, lat in (("podtui /healthz during two podtui downloads", ours_lat),
                           ("nginx /ping.txt during two nginx downloads (peer)", nginx_lat)):
            print(f"{label}: n={len(lat)} p50 {percentile(lat, 50):.2f} ms, p90 {percentile(lat, 90):.2f} ms, "
                  f"p99 {percentile(lat, 99):.2f} ms, max {max(lat):.1f} ms")
        print("goal: podtui /healthz p99 < 20 ms")
    finally:
        plane.kill()
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
