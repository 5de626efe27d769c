"""A fake RunPod GraphQL API for tests: the queries the runpod SDK (1.12) sends, parsed with graphql-core, with
RunPod's field names, error bodies and failure modes, and an execute mode that really runs a created pod's start
command on this machine (as the local provider does), so a test goes SDK -> fake API -> start script -> agent ->
control plane.

Faults, per test: `no_capacity` (GPU type ids), a wrong key (401), `queue_fault("429")` / `("502")` for the next
request, `hang_next_s` (a hang past the SDK's 30 s timeout), `drop_next_create` (the pod is created but the
answer is lost: "502" or "hang").
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import graphql
from aiohttp import web

NO_CAPACITY = ("There are no longer any instances available with the requested specifications. "
               "Please refresh and try again.")
SOMETHING_WRONG = "Something went wrong. Please try again later or contact support."
BAD_GATEWAY_HTML = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>" \
                   "</center><hr><center>cloudflare</center></body></html>"

GPUS = [
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24, "maxGpuCount": 8,
     "securePrice": 0.69, "communityPrice": 0.44, "secureSpotPrice": 0.35, "communitySpotPrice": 0.29},
    {"id": "NVIDIA RTX A6000", "displayName": "RTX A6000", "memoryInGb": 48, "maxGpuCount": 8,
     "securePrice": 0.76, "communityPrice": 0.49, "secureSpotPrice": 0.39, "communitySpotPrice": 0.32},
    {"id": "NVIDIA A100 80GB PCIe", "displayName": "A100 80GB", "memoryInGb": 80, "maxGpuCount": 8,
     "securePrice": 1.89, "communityPrice": 1.59, "secureSpotPrice": None, "communitySpotPrice": 0.89},
    {"id": "unknown", "displayName": "unknown", "memoryInGb": 0, "maxGpuCount": 0,
     "securePrice": None, "communityPrice": None, "secureSpotPrice": None, "communitySpotPrice": None},
]

RUNPODCTL = """#!/usr/bin/env python3
# Stand-in for runpodctl inside a fake pod: `runpodctl remove pod ID` terminates the pod on the fake API.
import json, os, sys, urllib.request
if sys.argv[1:3] != ["remove", "pod"] or len(sys.argv) != 4:
    sys.exit("usage: runpodctl remove pod POD_ID")
body = json.dumps({"query": 'mutation { podTerminate(input: {podId: "%s"}) }' % sys.argv[3]}).encode()
req = urllib.request.Request(os.environ["FAKE_RUNPOD_URL"] + "/graphql", data=body, method="POST",
                             headers={"Authorization": "Bearer " + os.environ["FAKE_RUNPOD_KEY"],
                                      "Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
print("pod " + sys.argv[3] + " removed")
"""


class FakeRunPod:
    """The fake API's state and faults."""

    def __init__(self, workdir: Path, api_key: str = "test-key", execute: bool = False,
                 boot_delay_s: float = 0.3) -> None:
        self.workdir = workdir
        self.api_key = api_key
        self.execute = execute
        self.boot_delay_s = boot_delay_s
        self.gpus = [dict(g) for g in GPUS]
        self.pods: dict[str, dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.no_capacity: set[str] = set()
        self.faults: list[str] = []
        self.hang_next_s: float = 0.0
        self.drop_next_create: str | None = None
        self.calls: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.bin_dir = workdir / "bin"

    # -- server ----------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/graphql", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        shim = self.bin_dir / "runpodctl"
        shim.write_text(RUNPODCTL.replace("/usr/bin/env python3", sys.executable))
        shim.chmod(0o755)
        return self.url

    async def stop(self) -> None:
        for pod_id in list(self.procs):
            self._kill(pod_id)
        if self._runner is not None:
            await self._runner.cleanup()

    def queue_fault(self, kind: str) -> None:
        """The next request answers with this fault: 429 (text body) or 502 (HTML body)."""
        self.faults.append(kind)

    def live_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if p["desiredStatus"] != "TERMINATED"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.Response(status=401, text="Unauthorized")
        if self.faults:
            kind = self.faults.pop(0)
            self.calls.append(f"fault:{kind}")
            if kind == "429":
                return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
            return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
        if self.hang_next_s:
            hang, self.hang_next_s = self.hang_next_s, 0.0
            await asyncio.sleep(hang)
        try:
            body = await request.json()
            document = graphql.parse(body["query"])
        except (ValueError, KeyError, graphql.GraphQLError):
            return web.json_response({"errors": [{"message": SOMETHING_WRONG,
                                                  "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}, status=400)
        operation = document.definitions[0]
        field = operation.selection_set.selections[0]  # type: ignore[attr-defined]
        name = field.name.value
        args = {a.name.value: graphql.value_from_ast_untyped(a.value) for a in field.arguments or ()}
        self.calls.append(name)
        resolver = getattr(self, f"r_{name}", None)
        if resolver is None:
            return web.json_response({"errors": [{"message": f'Cannot query field "{name}" on type "Query".'}]},
                                     status=400)
        try:
            result = resolver(args.get("input") or {})
        except GraphQLFault as exc:
            return web.json_response({"errors": [{"message": str(exc), "path": [name]}], "data": None})
        if name in ("podFindAndDeployOnDemand", "podRentInterruptable") and self.drop_next_create:
            drop, self.drop_next_create = self.drop_next_create, None
            if drop == "hang":
                await asyncio.sleep(35)  # past the SDK's 30 s timeout
            return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
        return web.json_response({"data": {name: project(result, field.selection_set)}})

    # -- resolvers -------------------------------------------------------------------------------

    def _gpu(self, gpu: dict[str, Any]) -> dict[str, Any]:
        out = dict(gpu)
        out.update(manufacturer="Nvidia", cudaCores=0, secureCloud=gpu["securePrice"] is not None,
                   communityCloud=gpu["communityPrice"] is not None, oneMonthPrice=None, threeMonthPrice=None,
                   oneWeekPrice=None)
        stock = "None" if gpu["id"] in self.no_capacity else "High"
        out["lowestPrice"] = {"minimumBidPrice": gpu["communitySpotPrice"],
                              "uninterruptablePrice": gpu["communityPrice"], "stockStatus": stock,
                              "availableGpuCounts": [1, 2, 4, 8], "maxUnreservedGpuCount": 8}
        return out

    def r_gpuTypes(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = args.get("id")
        return [self._gpu(g) for g in self.gpus if wanted is None or g["id"] == wanted]

    def r_myself(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"id": "user-1", "pubKey": "", "networkVolumes": [],
                "pods": [self._view(p) for p in self.pods.values() if p["desiredStatus"] != "TERMINATED"]}

    def r_pod(self, args: dict[str, Any]) -> dict[str, Any] | None:
        pod = self.pods.get(args.get("podId", ""))
        if pod is None or pod["desiredStatus"] == "TERMINATED":
            return None
        return self._view(pod)

    def r_podFindAndDeployOnDemand(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._deploy(args, spot=False)

    def r_podRentInterruptable(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("bidPerGpu") is None:
            raise GraphQLFault("bidPerGpu is required")
        return self._deploy(args, spot=True)

    def r_podStop(self, args: dict[str, Any]) -> dict[str, Any]:
        pod = self._existing(args)
        self._kill(pod["id"])
        pod["desiredStatus"] = "EXITED"
        return {"id": pod["id"], "desiredStatus": "EXITED"}

    def r_podResume(self, args: dict[str, Any]) -> dict[str, Any]:
        pod = self._existing(args)
        pod["desiredStatus"] = "RUNNING"
        return self._view(pod)

    def r_podTerminate(self, args: dict[str, Any]) -> None:
        pod = self._existing(args)
        self._kill(pod["id"])
        pod["desiredStatus"] = "TERMINATED"
        return None

    def _existing(self, args: dict[str, Any]) -> dict[str, Any]:
        pod = self.pods.get(args.get("podId", ""))
        if pod is None or pod["desiredStatus"] == "TERMINATED":
            raise GraphQLFault("Pod not found")
        return pod

    def _deploy(self, args: dict[str, Any], spot: bool) -> dict[str, Any]:
        gpu_id = args.get("gpuTypeId")
        gpu = next((g for g in self.gpus if g["id"] == gpu_id), None)
        if gpu is None:
            raise GraphQLFault(f'GPU type "{gpu_id}" not found')
        if gpu_id in self.no_capacity:
            raise GraphQLFault(NO_CAPACITY)
        count = int(args.get("gpuCount") or 1)
        community = args.get("cloudType") == "COMMUNITY"
        price = (gpu["communitySpotPrice"] if community else gpu["secureSpotPrice"]) if spot else None
        price = price or (args.get("bidPerGpu") if spot else (gpu["communityPrice"] if community
                                                                else gpu["securePrice"]))
        pod_id = secrets.token_hex(7)
        env = {e["key"]: e["value"] for e in args.get("env") or []}
        pod = {
            "id": pod_id, "name": args.get("name"), "imageName": args.get("imageName"),
            "env": [f"{k}={v}" for k, v in env.items()], "desiredStatus": "RUNNING", "costPerHr": price * count,
            "gpuCount": count, "machineId": "m-" + pod_id[:6], "containerDiskInGb": args.get("containerDiskInGb"),
            "dockerArgs": args.get("dockerArgs"), "dockerId": None, "lastStatusChange": "Rented by User",
            "memoryInGb": 62, "podType": "INTERRUPTABLE" if spot else "RESERVED", "port": None,
            "ports": args.get("ports"), "vcpuCount": 8, "volumeInGb": args.get("volumeInGb", 0),
            "volumeMountPath": args.get("volumeMountPath"), "_created": time.time(), "_gpu": gpu["displayName"],
            "_envdict": env,
        }
        self.pods[pod_id] = pod
        if self.execute:
            self._run(pod)
        return self._view(pod)

    def _view(self, pod: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in pod.items() if not k.startswith("_")}
        proc = self.procs.get(pod["id"])
        if proc is not None and proc.poll() is not None and pod["desiredStatus"] == "RUNNING":
            pod["desiredStatus"] = out["desiredStatus"] = "EXITED"  # the container ended on its own
        booted = time.time() - pod["_created"] >= self.boot_delay_s and pod["desiredStatus"] == "RUNNING"
        out["runtime"] = {"uptimeInSeconds": int(time.time() - pod["_created"]), "ports": []} if booted else None
        out["uptimeSeconds"] = int(time.time() - pod["_created"])
        out["machine"] = {"podHostId": f"{pod['id']}-64410065", "gpuDisplayName": pod["_gpu"]}
        return out

    # -- execute mode ----------------------------------------------------------------------------

    def _run(self, pod: dict[str, Any]) -> None:
        home = self.workdir / "pods" / pod["id"]
        home.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PODTUI_", "RUNPOD_"))}
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(pod["_envdict"])
        env.update(HOME=str(home), RUNPOD_POD_ID=pod["id"], RUNPOD_API_KEY="pod-scoped-key",
                   RUNPOD_GPU_COUNT=str(pod["gpuCount"]), FAKE_RUNPOD_URL=self.url, FAKE_RUNPOD_KEY=self.api_key)
        with open(home / "container.log", "ab") as out:
            self.procs[pod["id"]] = subprocess.Popen(shlex.split(pod["dockerArgs"]), cwd=home, env=env, stdout=out,
                                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                     start_new_session=True)

    def _kill(self, pod_id: str) -> None:
        proc = self.procs.pop(pod_id, None)
        if proc is None or proc.poll() is not None:
            return
        groups = {proc.pid}
        agent = self.workdir / "pods" / pod_id / "podtui" / "agent.json"
        try:
            groups.add(int(json.loads(agent.read_text())["child_pgid"]))
        except (OSError, ValueError, KeyError):
            pass
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)  # a terminated container is gone at once
            except ProcessLookupError:
                pass
        proc.wait(5)


class GraphQLFault(Exception):
    """A GraphQL error answer."""


def project(value: Any, selection_set: Any) -> Any:
    """Keep only the selected fields, recursively (as a GraphQL server answers)."""
    if selection_set is None or value is None:
        return value
    if isinstance(value, list):
        return [project(v, selection_set) for v in value]
    out = {}
    for selection in selection_set.selections:
        key = selection.name.value
        out[key] = project(value.get(key), selection.selection_set)
    return out
