"""Push benchmark (issue 25): `podtui datasets push NAME --volume VOL` (server/push.py: boto3 multipart onto a RunPod
network volume through its S3-compatible API, no pod billing) against boto3's own `upload_file` (its default
TransferConfig) and, when the AWS CLI is there, `aws s3 cp`, of the same file to the same S3 endpoint, in turn:

- the S3 side: moto's S3 server (`ThreadedMotoServer`) in a process of its own;
- the volume: a network volume of the fake RunPod REST v2 (tests/fakes/runpod_v2.py), its bucket made in moto;
- podtui: a `podtui serve` of its own, the push asked by the `podtui datasets push` command as a user runs it;
- the peers: a process each (`python -c` with boto3, `aws s3 cp`), so every side pays its own start.

    python bench/push.py [--size-mib 1024] [--rounds 3] [--aws PATH]

Goal: podtui >= 0.8x the peer. Checks every upload whole: the object's size and sha256 read back from the S3 side
equal the file's (and podtui's `.complete` is there, written last).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port, write_dataset  # noqa: E402
from tests.fakes.runpod_v2 import FakeRunPodV2  # noqa: E402

KEY, SECRET = "user_bench", "rps_bench"
MOTO = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""
PEER = """
import sys, boto3
from botocore.config import Config
client = boto3.session.Session().client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
    aws_secret_access_key=sys.argv[3], region_name="us-ks-2",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
client.upload_file(sys.argv[4], sys.argv[5], sys.argv[6])
"""


def wait_for(url: str, proc: subprocess.Popen[Any], what: str) -> None:
    import httpx

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} ended (exit code {proc.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer at {url}")


class FakeRunPod:
    """The fake RunPod API on an event loop of its own thread (the bench itself is blocking)."""

    def __init__(self, work: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = FakeRunPodV2(work)
        self.url = asyncio.run_coroutine_threadsafe(self.api.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def object_sha256(s3: Any, bucket: str, key: str) -> tuple[int, str]:
    """The size and sha256 of an object as the S3 side has it (read back)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: body.read(8 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def empty(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


def cpu_of(pid: int) -> float:
    """A process's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict[str, str], also: int | None = None) -> tuple[float, float]:
    """Run a command: its wall time, and the CPU it took (with that of the process `also`, which works for it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    helper = cpu_of(also) if also else 0.0
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu + (cpu_of(also) - helper if also else 0.0)


def main(size_mib: int, rounds: int, aws: str | None) -> int:
    import boto3
    from botocore.config import Config

    size = size_mib << 20
    with tempfile.TemporaryDirectory(prefix="podtui-bench-push-") as tmp:
        work = Path(tmp)
        data = work / "big.bin"
        want = write_dataset(data, size)
        s3_port, plane_port = free_port(), free_port()
        endpoint = f"http://127.0.0.1:{s3_port}"
        moto = subprocess.Popen([sys.executable, "-c", MOTO, str(s3_port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        fake = FakeRunPod(work / "fake")
        token = "bench-admin-token-0123456789"
        env = {**os.environ, "PODTUI_DATA_DIR": str(work / "plane"), "PODTUI_PORT": str(plane_port),
               "PODTUI_HOST": "127.0.0.1", "PODTUI_CONFIG_FILE": str(work / "none.toml"),
               "PODTUI_ADMIN_TOKEN": token, "RUNPOD_API_KEY": "test-key", "PODTUI_RUNPOD_API_URL": fake.url,
               "PODTUI_RUNPOD_POD_API_URL": fake.url, "PODTUI_RUNPOD_S3_URL": endpoint,
               "PODTUI_RUNPOD_S3_ACCESS_KEY": KEY, "PODTUI_RUNPOD_S3_SECRET": SECRET,
               "PODTUI_SERVER": f"http://127.0.0.1:{plane_port}", "NO_PROXY": "127.0.0.1",
               "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-ks-2"}
        plane = subprocess.Popen([sys.executable, "-m", "podtui.cli", "serve"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        podtui = [sys.executable, "-m", "podtui.cli"]
        times: dict[str, list[float]] = {"podtui": [], "boto3": []}
        if aws:
            times["aws s3 cp"] = []
        cpus: dict[str, list[float]] = {side: [] for side in times}
        try:
            wait_for(endpoint, moto, "moto's S3 server")
            wait_for(f"http://127.0.0.1:{plane_port}/healthz", plane, "podtui serve")
            made = subprocess.run([*podtui, "volumes", "create", "vol", "--provider", "runpod", "--size", "20",
                                   "--dc", "US-KS-2", "--json"], env=env, capture_output=True, text=True)
            bucket = json.loads(made.stdout)["id"]
            s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                                                aws_secret_access_key=SECRET, region_name="us-east-1",
                                                config=Config(s3={"addressing_style": "path"}))
            s3.create_bucket(Bucket=bucket)  # RunPod's bucket is the volume itself
            subprocess.run([*podtui, "datasets", "add", str(data), "--name", "big"], env=env, check=True,
                           capture_output=True)
            sides = list(times)
            for n in range(rounds):
                for side in sides[n % len(sides):] + sides[:n % len(sides)]:  # each goes first in turn
                    empty(s3, bucket)
                    s3_cpu = cpu_of(moto.pid)
                    if side == "podtui":
                        seconds, cpu = timed([*podtui, "datasets", "push", "big", "--volume", "vol"], env,
                                             also=plane.pid)
                        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
                        key = next(k for k in keys if k.endswith("/big.bin"))
                        assert any(k.endswith("/.complete") for k in keys), keys
                    elif side == "boto3":
                        key = "peer/big.bin"
                        seconds, cpu = timed([sys.executable, "-c", PEER, endpoint, KEY, SECRET, str(data), bucket,
                                              key], env)
                    else:
                        key = "aws/big.bin"
                        seconds, cpu = timed([aws or "aws", "s3", "cp", "--only-show-errors", "--endpoint-url",
                                              endpoint, str(data), f"s3://{bucket}/{key}"], env)
                    s3_cpu = cpu_of(moto.pid) - s3_cpu
                    got = object_sha256(s3, bucket, key)
                    assert got == (size, want), f"{side}: the S3 side has {got}, sent {(size, want)}"
                    times[side].append(seconds)
                    cpus[side].append(cpu)
                    print(f"{side:10s} {size_mib / seconds:6.0f} MiB/s ({seconds:.2f} s; CPU {cpu:.2f} s, the S3 "
                          f"server's {s3_cpu:.2f} s), checked whole", flush=True)
        finally:
            plane.terminate()
            moto.terminate()
            plane.wait(10)
            moto.wait(10)
            fake.stop()
    print(json.dumps({"size_mib": size_mib, **{k: [round(x, 2) for x in v] for k, v in times.items()}}))
    rate = {side: (size_mib / min(v), size_mib / statistics.median(v)) for side, v in times.items()}
    for side, (best, median) in rate.items():
        cpu = statistics.median(cpus[side])
        print(f"{side:10s} best {best:6.0f} MiB/s, median {median:6.0f} MiB/s, CPU {cpu:.2f} s (median; podtui: "
              "the command and the control plane)")
    ok = True
    for peer in [side for side in rate if side != "podtui"]:
        best, median = rate["podtui"][0] / rate[peer][0], rate["podtui"][1] / rate[peer][1]
        print(f"podtui / {peer}: {best:.2f}x best to best, {median:.2f}x median to median (goal >= 0.8x)")
        ok = ok and best >= 0.8
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aws", help="the AWS CLI (default: `aws` on PATH, if there)")
    args = parser.parse_args()
    sys.exit(main(args.size_mib, args.rounds, args.aws or shutil.which("aws")))
