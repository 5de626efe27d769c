"""A fake RunPod REST API v2 (pods, catalog) for tests, built from RunPod's published OpenAPI document.

The document is `runpod-v2-openapi.json` beside this module (an unchanged copy of RunPod's). Every request is
validated against it (body against the operation's requestBody schema, query parameters against the operation's
parameters) and every JSON answer the fake sends is validated against the operation's response schema
(`check_response`, run as a debug assertion; failures also land in `response_errors`). Errors are RFC 9457 problem
objects (`application/problem+json`, `{"title", "status", "detail"}` plus `"errors"` on 422). Authenticated answers
carry `RateLimit` / `RateLimit-Policy` headers that count down per request. `POST /graphql` remains for the one
thing v2 lacks, interruptible (spot) pods (`podRentInterruptable`), plus `gpuTypes` and `myself { id }`.

Keys: `Authorization: Bearer <api_key>` is the account key. Each pod also gets a pod-scoped key (`pod_key(id)`,
`RUNPOD_API_KEY` inside an executed pod) that may GET (pod, logs), DELETE and POST an action on ITS OWN pod only
(403 for any other pod, and for create, list, PATCH and the catalog). It stays valid after its pod is deleted
(the pod then answers 404).

Pod life: POST /v2/pods answers 201 with status PROVISIONING; STARTING after `boot_delay_s / 2` (the container
starts then), RUNNING after `boot_delay_s`. `actions` follow the podAction description (RUNNING: stop, restart,
terminate; EXITED, ERROR: start, terminate; PROVISIONING, STARTING: stop, terminate; a locked pod loses stop and
restart); an action not listed answers 409. DELETE (or action terminate) answers 204, kills the container and the
pod vanishes (GET 404, not listed) but stays in `pods` with status TERMINATED.

Faults and knobs a test can set (all per instance):
- `no_capacity: set`: GPU type ids, or `(gpu_id, cloud)` / `(gpu_id, data_center_id)` tuples: create answers 400
  with `detail` NO_CAPACITY; the catalog reports availability NONE; GraphQL stockStatus "None".
- `no_balance: bool`: create answers 402 "Payment Required" (insufficient balance).
- `forbidden_gpus: set[str]`: create answers 403 for those GPU types (the account cannot use the pool).
- `stock: dict[str, str]`: GPU id -> catalog availability (LOW / MEDIUM / HIGH; default HIGH).
- `queue_fault(kind, **opts)`: the next request (not /graphql unless `graphql=True`; only requests whose call is
  `opts["call"]`, e.g. "POST /v2/pods", when given) gets: "429" (problem, `Retry-After: opts.get("retry_after", 1)`,
  RateLimit minute r=0), "500" (problem), "502" / "503" (Cloudflare HTML page, text/html), "reset" (the connection
  is aborted without an answer), "hang" (sleeps `opts.get("seconds", 35)`, then the request is processed and
  answered normally), "garbage" (200, application/json, a body that is not JSON). Faults queue in order; the
  faulted request is recorded in `calls` as "fault:<kind>" (a hang also records the call itself).
- `create_fault: str | None`: one shot for the next POST /v2/pods or POST /v2/clusters, applied AFTER the pod
  (or cluster) has really been created (the answer is lost, it exists): "500", "502", "reset", "hang" (sleeps
  `hang_s`, default 35, then 504 problem), "garbage" (201 with a body that is not JSON).
- `list_lag_s: float`: a pod younger than this is missing from GET /v2/pods and GET /v2/pods/{id} (404) and its
  logs (404); DELETE and actions find it (RunPod's read side lags a create).
- `zero_cost_at_create: bool`: the 201 answer and the pod while PROVISIONING report cost 0.0.
- `entrypoints: dict[str, list[str]]`: image -> that image's ENTRYPOINT argv. In execute mode a container runs
  ENTRYPOINT + shlex.split(args) (args empty: ENTRYPOINT + the image CMD); an image without ENTRYPOINT runs
  shlex.split(args) alone (args replace CMD). The CMD stand-in (`DEFAULT_CMD`) sleeps forever, like /start.sh.
  Two ready stand-ins are written to workdir/bin at start(): `wrapper_entrypoint` (prints WRAPPER_BANNER, then
  `exec "$@"`, like NVIDIA's nvidia_entrypoint.sh) and `server_entrypoint` (ignores its arguments, prints
  "serving on 8000" and sleeps forever, like a vLLM image).
- Container restarts (execute mode): when the container's main process exits on its own while the pod is STARTING
  or RUNNING, the container is started again from the beginning on the same pod ~0.2 s later (a background task
  checks every 0.1 s), `restarts[pod_id]` counts it and the system log gets "container restarted".
  `restart_container(pod_id)` forces one. Stopped or deleted pods are not restarted.
- `set_gpu_util(pod_id, util, mem)`: the RUNNING pod's runtime.gpus values (default 0 / 0).
- `add_log(pod_id, line, source="container")`: a line in the pod's log stream. `fail_pod(pod_id)`: status ERROR.
- `graphql_down: bool | str`: /graphql is retired: True or "410" -> 410 problem, "404" -> a Cloudflare HTML 404.
- `enforce_rate_limit: bool` (default False): when True a request beyond a `rate_limits` window quota answers a
  real 429; when False the RateLimit header only counts down (stopping at r=0).
- `validate_responses: bool` (default True): the debug assertion on every JSON answer.
- a wrong or missing key answers 401 everywhere.

Execute mode (`execute=True`, like the GraphQL fake's): a pod's container command really runs on this machine in a
new session, cwd and HOME = workdir/pods/<id>, env = os.environ minus PODTUI_* / RUNPOD_* plus the pod's `env`
plus RUNPOD_POD_ID, RUNPOD_API_KEY (pod-scoped), RUNPOD_GPU_COUNT, RUNPOD_DC_ID, RUNPOD_PUBLIC_IP,
RUNPOD_TCP_PORT_<n>, FAKE_RUNPOD_URL; PATH starts with workdir/bin and sys.executable's directory; stdout and
stderr go to workdir/pods/<id>/container.log and into the log stream (source "container"). Stop, delete and
restarts SIGKILL the container's process group and the agent's child group (workdir/pods/<id>/podtui/agent.json
"child_pgid"). workdir/bin/runpodctl is a shim that speaks the APIs the real runpodctl speaks, which RunPod
retires: `runpodctl remove pod ID` sends GraphQL podTerminate with $RUNPOD_API_KEY (the pod-scoped key: the fake's
GraphQL takes the account key only, so it fails, as it will everywhere once GraphQL is retired), `runpodctl pod
delete ID` sends REST v1 DELETE /v1/pods/ID (retired: 404), `runpodctl stop pod ID` GraphQL podStop.

Keys and refusals (this round): `pod_delete_denied: bool`: a pod-scoped key's DELETE (and terminate action) on its
own pod answers 404 "not found or is not accessible to the caller" and ends nothing (what a pod-scoped key may do
is undocumented; the document's 404 allows it). `read_only_keys: set[str]`: keys that may GET anything and answer
403 "access denied" to every write (create, delete, action, PATCH, PUT). `ssh_keys: list[str]`: the account's keys
(GET / PUT /v2/account/ssh-keys). `spot_unlisted: bool`: v2 neither lists, reads nor deletes spot pods (GET and
DELETE 404); GraphQL `pod(input: {podId})` reads them and `podTerminate` ends them. Spot rentals honour
`allowedCudaVersions` (exact match); without it a pod lands on the oldest CUDA host (assumed).
GET /v2/pods/{id}/logs answers 406 to an Accept without text/event-stream (the only type it declares).
`bid_floor_rise: dict[str, float]`: GPU id -> how far the minimum spot bid rose after the price was read (a bid
below it is refused with "Your bid price ... is below the minimum bid price", wording assumed).

Recorded: `calls` ("POST /v2/pods", "GET /v2/pods/{id}" with the literal route template, "graphql:<field>",
"fault:<kind>" for a queued fault, "fault:create:<kind>" for a create_fault, "graphql:down" /
"graphql:unauthorized" / "graphql:unparsable", or "METHOD /path" for an unknown route), `requests` (the concrete
"METHOD /path?query"), `bodies` ((call, parsed JSON or raw text) for every request with a body).

Public API: FakeRunPodV2(workdir, api_key="test-key", execute=False, boot_delay_s=0.3); async start() -> url;
async stop(); url; pods (records by id: the Pod fields plus private "_" keys such as "_key", "_spot");
live_pods(); pod_key(id); logs (id -> [LogEntry]); log_lines(id, source=None); add_log(id, line, source);
set_gpu_util(id, util, mem); restart_container(id); fail_pod(id); restarts; procs (id -> Popen);
queue_fault(kind, **opts); check_response(operation_id, status, body); response_errors; calls; requests; bodies;
gpus / data_centers (editable catalog copies); wrapper_entrypoint, server_entrypoint, runpodctl, bin_dir (paths);
the knobs above; network_volumes (records by id: the document's NetworkVolume), served by the network-volume
routes, and a create's `mounts.network` placed in its volume's data center (Secure Cloud only).
`clusters` (FakeClusters, tests/fakes/runpod_clusters.py: `/v2/clusters*`, members as pods with
`cluster {id, rank, ip}`, listed by GET /v2/pods only with includeClusterPods=true, refused by the pod endpoints
that change or delete, 409). Module constants: GPU_4090, GPU_A6000, GPU_A100, NO_CAPACITY, WRAPPER_BANNER,
SERVING_LINE, DEFAULT_CMD, OPENAPI (the parsed document), OPERATIONS, schema_errors(pointer, instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http
import json
import math
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import graphql
from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from . import serve_on_loopback
from .runpod_clusters import CLUSTER_OPS, FakeClusters

# -- the document ----------------------------------------------------------------------------------------------

OPENAPI_PATH = Path(__file__).with_name("runpod-v2-openapi.json")
OPENAPI: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
DOC_URI = "urn:runpod:rest-v2:openapi"
REGISTRY: Registry = Registry().with_resource(DOC_URI, Resource.from_contents(OPENAPI, DRAFT202012))

# -- constants -------------------------------------------------------------------------------------------------

GPU_4090 = "NVIDIA GeForce RTX 4090"
GPU_A6000 = "NVIDIA RTX A6000"
GPU_A100 = "NVIDIA A100 80GB PCIe"
NO_CAPACITY = ("There are no longer any instances available with the requested specifications. "
               "Please refresh and try again.")
SOMETHING_WRONG = "Something went wrong. Please try again later or contact support."
WRAPPER_BANNER = "== CUDA == (fake nvidia_entrypoint.sh: NVIDIA wrapper entrypoint)"
SERVING_LINE = "serving on 8000"
DEFAULT_CMD = [sys.executable, "-c", "import time\nwhile True:\n    time.sleep(3600)"]
PUBLIC_IP = "203.0.113.7"  # TEST-NET-3
CUDA_VERSIONS = ["12.4", "12.6", "12.8"]
DEFAULT_DISK_GB = 20  # the document gives no default for `disk` (assumed: the console's default)

GPUS: list[dict[str, Any]] = [
    {"id": GPU_4090, "name": "RTX 4090", "pool": "ADA_24", "manufacturer": "NVIDIA", "memory": 24,
     "secure": True, "community": True, "price": {"secure": 0.69, "community": 0.44},
     "maxCount": {"secure": 8, "community": 8}, "spot": {"secure": 0.35, "community": 0.29}},
    {"id": GPU_A6000, "name": "RTX A6000", "pool": "AMPERE_48", "manufacturer": "NVIDIA", "memory": 48,
     "secure": True, "community": True, "price": {"secure": 0.76, "community": 0.49},
     "maxCount": {"secure": 8, "community": 8}, "spot": {"secure": 0.39, "community": 0.32}},
    {"id": GPU_A100, "name": "A100 80GB", "pool": "AMPERE_80", "manufacturer": "NVIDIA", "memory": 80,
     "secure": True, "community": True, "price": {"secure": 1.89, "community": 1.59},
     "maxCount": {"secure": 8, "community": 8}, "spot": {"secure": None, "community": 0.89}},
]

DATA_CENTERS: list[dict[str, Any]] = [
    {"id": "US-KS-2", "name": "US Kansas 2", "region": "NORTH_AMERICA", "globalNetwork": True,
     "networkVolumeTypes": ["STANDARD", "HIGH_PERFORMANCE"], "compliance": ["SOC_2_TYPE_2", "ISO_IEC_27001"],
     "_country": "US"},
    {"id": "US-TX-3", "name": "US Texas 3", "region": "NORTH_AMERICA", "globalNetwork": False,
     "networkVolumeTypes": ["STANDARD"], "compliance": ["SOC_2_TYPE_2"], "_country": "US"},
    {"id": "EU-RO-1", "name": "Europe Romania 1", "region": "EUROPE", "globalNetwork": True,
     "networkVolumeTypes": ["STANDARD"], "compliance": ["GDPR", "ISO_IEC_27001"], "_country": "RO"},
]

CPU_FLAVORS: dict[str, dict[str, Any]] = {
    "cpu3c": {"name": "Compute-Optimized", "ram_per_vcpu": 2, "price_per_vcpu": 0.03, "max_vcpu": 32},
    "cpu5c": {"name": "Compute-Optimized Gen 5", "ram_per_vcpu": 2, "price_per_vcpu": 0.04, "max_vcpu": 32},
}

ACTIONS: dict[str, list[str]] = {
    "PROVISIONING": ["stop", "terminate"], "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"], "TERMINATED": [],
}

TITLES = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 422: "Unprocessable Entity",
          429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
          504: "Gateway Timeout"}

FAULT_KINDS = ("429", "500", "502", "503", "reset", "hang", "garbage")
CREATE_FAULT_KINDS = ("500", "502", "reset", "hang", "garbage")
GARBAGE = b'{"id": "7h9k2m4n6p", "name": "pytorch-tra\x00<html>upstream'


def cloudflare_html(status: int, text: str) -> str:
    return (f"<html>\r\n<head><title>{status} {text}</title></head>\r\n<body>\r\n<center><h1>{status} {text}</h1>"
            "</center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n")


RUNPODCTL = """#!/usr/bin/env python3
# Stand-in for runpodctl inside a fake pod, speaking the APIs the real one speaks, which RunPod retires:
#   runpodctl remove pod ID  -> GraphQL podTerminate (retired early 2027) with the pod-scoped key
#   runpodctl pod delete ID  -> REST v1 DELETE /v1/pods/ID (retired 2026-11-15: no such route any more)
#   runpodctl stop pod ID    -> GraphQL podStop
import json, os, sys, urllib.error, urllib.request
args = sys.argv[1:]
base = os.environ["FAKE_RUNPOD_URL"]
if len(args) == 3 and args[:2] == ["remove", "pod"]:
    url, method = base + "/graphql", "POST"
    body = {"query": 'mutation { podTerminate(input: {podId: "%s"}) }' % args[2]}
elif len(args) == 3 and args[:2] == ["pod", "delete"]:
    url, method, body = base + "/v1/pods/" + args[2], "DELETE", None
elif len(args) == 3 and args[:2] in (["stop", "pod"], ["pod", "stop"]):
    url, method = base + "/graphql", "POST"
    body = {"query": 'mutation { podStop(input: {podId: "%s"}) { id } }' % args[2]}
else:
    sys.exit("usage: runpodctl remove pod POD_ID | runpodctl pod delete POD_ID | runpodctl stop pod POD_ID")
req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                             headers={"Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"],
                                      "Content-Type": "application/json"})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    answer = json.loads(opener.open(req, timeout=10).read() or b"{}")
except urllib.error.HTTPError as exc:
    sys.exit("Error: " + str(exc.code) + " " + exc.read().decode(errors="replace")[:200])
except (OSError, ValueError) as exc:
    sys.exit("Error: " + str(exc))
if answer.get("errors"):
    sys.exit("Error: " + str(answer["errors"][0].get("message")))
print('pod "' + args[2] + '" removed')
"""

WRAPPER_ENTRYPOINT = f"""#!/usr/bin/env bash
# Stand-in for NVIDIA's nvidia_entrypoint.sh: a banner, then the arguments run as the command.
echo "{WRAPPER_BANNER}"
exec "$@"
"""

SERVER_ENTRYPOINT = f"""#!/usr/bin/env bash
# Stand-in for a vLLM-style image entrypoint: it ignores the arguments and serves forever.
echo "{SERVING_LINE}"
exec sleep 2147483647
"""


# -- helpers ---------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: str) -> float:
    """An RFC 3339 date-time as epoch seconds (ValueError when it is not one)."""
    if not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        parse_rfc3339(value)
    return True


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    return "".join("/" + _escape(str(p)) for p in parts)


def resolve(ref_or_pointer: str) -> Any:
    """The document node at a JSON pointer ("#/components/..." or DOC_URI#/...)."""
    node: Any = OPENAPI
    path = ref_or_pointer.split("#", 1)[-1]
    for raw in path.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _deref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = resolve(schema["$ref"])
    return schema


_VALIDATORS: dict[str, Draft202012Validator] = {}


def validator_at(ptr: str) -> Draft202012Validator:
    v = _VALIDATORS.get(ptr)
    if v is None:
        v = Draft202012Validator({"$ref": f"{DOC_URI}#{ptr}"}, registry=REGISTRY, format_checker=FORMATS)
        _VALIDATORS[ptr] = v
    return v


def _declared_properties(schema: Any, depth: int = 0) -> set[str]:
    """Property names a schema (with its allOf/anyOf/oneOf/if/then/else and $refs) declares."""
    if not isinstance(schema, dict) or depth > 20:
        return set()
    schema = _deref(schema)
    keys = set(schema.get("properties", {}))
    for kw in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(kw, []):
            keys |= _declared_properties(sub, depth + 1)
    for kw in ("if", "then", "else"):
        keys |= _declared_properties(schema.get(kw), depth + 1)
    return keys


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _describe(error: ValidationError) -> str | None:
    """One violation in the document's style ("additional properties 'bogus' not allowed"); None to drop it."""
    kind, want, got = error.validator, error.validator_value, error.instance
    if kind in ("additionalProperties", "unevaluatedProperties"):
        if not isinstance(got, dict):
            return None
        declared = _declared_properties(error.schema)
        if kind == "additionalProperties":
            declared = set(error.schema.get("properties", {}))
        # jsonschema drops the annotations of a failing subschema, so a nested violation also reports its
        # parent's known keys as unevaluated: only keys no subschema declares are extra.
        extra = sorted(k for k in got if k not in declared)
        if not extra:
            return None
        return "additional properties " + ", ".join(_quote(k) for k in extra) + " not allowed"
    if kind == "required":
        missing = [p for p in want if isinstance(got, dict) and p not in got]
        if len(missing) > 1:
            return "missing properties " + ", ".join(_quote(p) for p in missing)
        return f"missing property {_quote(missing[0])}" if missing else None
    if kind == "type":
        wanted = " or ".join(want) if isinstance(want, list) else str(want)
        return f"got {_json_type(got)}, want {wanted}"
    if kind == "enum":
        return "value must be one of " + ", ".join(_quote(v) for v in want)
    if kind == "const":
        return f"value must be {_quote(want)}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return f"must be {op} {want} but found {got}"
    if kind in ("minLength", "maxLength"):
        op = ">=" if kind == "minLength" else "<="
        return f"length must be {op} {want}, but got {len(got)}"
    if kind in ("minItems", "maxItems"):
        op = "at least" if kind == "minItems" else "at most"
        return f"must have {op} {want} items but found {len(got)}"
    if kind == "pattern":
        return f"{_quote(got)} does not match pattern {_quote(want)}"
    if kind == "format":
        return f"{_quote(got)} is not valid {_quote(want)}"
    return error.message


def schema_errors(ptr: str, instance: Any, root: str = "$") -> list[str]:
    """Every violation of the document's schema at `ptr`, one "<path>: <message>" string each."""
    out: list[str] = []
    for error in validator_at(ptr).iter_errors(instance):
        message = _describe(error)
        if message is None:
            continue
        line = f"{root}{error.json_path[1:]}: {message}"
        if line not in out:
            out.append(line)
    return sorted(out)


@dataclass
class Operation:
    id: str
    method: str
    template: str
    node: dict[str, Any]
    ptr: str  # the operation's pointer in the document
    params: list[tuple[dict[str, Any], str]]  # (parameter object, pointer of its schema)

    @property
    def call(self) -> str:
        return f"{self.method} {self.template}"

    def body_pointer(self) -> str | None:
        if "requestBody" not in self.node:
            return None
        return self.ptr + pointer("requestBody", "content", "application/json", "schema")


def _operations() -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    for template, item in OPENAPI["paths"].items():
        shared = item.get("parameters", [])
        for method, node in item.items():
            if method == "parameters":
                continue
            op_ptr = pointer("paths", template, method)
            params: list[tuple[dict[str, Any], str]] = []
            for where, plist in ((pointer("paths", template, "parameters"), shared),
                                 (op_ptr + "/parameters", node.get("parameters", []))):
                for i, param in enumerate(plist):
                    if "$ref" in param:
                        ref = param["$ref"].split("#", 1)[1]
                        params.append((resolve(param["$ref"]), ref + "/schema"))
                    else:
                        params.append((param, f"{where}/{i}/schema"))
            ops[node["operationId"]] = Operation(node["operationId"], method.upper(), template, node, op_ptr, params)
    return ops


OPERATIONS = _operations()
ROUTED = ("listPods", "createPod", "getPod", "updatePod", "deletePod", "podAction", "getPodLogs", "listGpuTypes",
          "getGpuType", "listDataCenters", "getDataCenter", *CLUSTER_OPS)
ROUTED += ("getSshKeys", "updateSshKeys")
# Network volumes (issue 25), from the document's "Network Volumes" operations and its Mounts/NetworkMount rules.
VOLUME_OPS = ("listNetworkVolumes", "createNetworkVolume", "getNetworkVolume", "updateNetworkVolume",
              "deleteNetworkVolume")
ROUTED = ROUTED + VOLUME_OPS


class Problem(Exception):
    """An RFC 9457 problem answer."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": TITLES.get(self.status) or http.HTTPStatus(self.status).phrase,
                               "status": self.status, "detail": self.detail}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LogEntry:
    seq: int
    t: float
    source: str
    line: str

    @property
    def ts(self) -> str:
        return rfc3339(self.t)

    @property
    def event_id(self) -> str:
        return f"{self.ts}/{self.seq:012d}"

    def sse(self) -> bytes:
        data = json.dumps({"ts": self.ts, "source": self.source, "line": self.line}, separators=(",", ":"))
        return f"id: {self.event_id}\ndata: {data}\n\n".encode()


class GraphQLFault(Exception):
    """A GraphQL error answer."""


# -- the fake --------------------------------------------------------------------------------------------------


class FakeRunPodV2:
    """The fake API's state, faults and server (see the module docstring)."""

    def __init__(self, workdir: Path, api_key: str = "test-key", execute: bool = False,
                 boot_delay_s: float = 0.3) -> None:
        self.workdir = Path(workdir)
        self.api_key = api_key
        self.execute = execute
        self.boot_delay_s = boot_delay_s
        self.bin_dir = self.workdir / "bin"
        self.wrapper_entrypoint = self.bin_dir / "wrapper-entrypoint"
        self.server_entrypoint = self.bin_dir / "server-entrypoint"
        self.runpodctl = self.bin_dir / "runpodctl"
        self.url = ""
        self.gpus: list[dict[str, Any]] = copy.deepcopy(GPUS)
        self.data_centers: list[dict[str, Any]] = copy.deepcopy(DATA_CENTERS)
        self.pods: dict[str, dict[str, Any]] = {}
        self.network_volumes: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[LogEntry]] = {}
        self.restarts: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.calls: list[str] = []
        self.requests: list[str] = []
        self.bodies: list[tuple[str, Any]] = []
        self.response_errors: list[str] = []
        # faults and knobs
        self.no_capacity: set[str | tuple[str, str]] = set()
        self.no_balance = False
        self.forbidden_gpus: set[str] = set()
        self.stock: dict[str, str] = {}
        self.create_fault: str | None = None
        self.hang_s = 35.0
        self.list_lag_s = 0.0
        self.zero_cost_at_create = False
        self.entrypoints: dict[str, list[str]] = {}
        self.graphql_down: bool | str = False
        self.enforce_rate_limit = False
        self.rate_limits: list[tuple[str, int, int]] = [("minute", 60, 60), ("hour", 3000, 3600),
                                                        ("day", 50000, 86400)]
        self.validate_responses = True
        self.pod_delete_denied = False
        self.read_only_keys: set[str] = set()
        self.ssh_keys: list[str] = []
        self.spot_unlisted = False
        self.bid_floor_rise: dict[str, float] = {}
        self._faults: list[tuple[str, dict[str, Any]]] = []
        self._keys: dict[str, str] = {}  # pod-scoped key -> pod id
        self._windows: dict[str, tuple[float, int]] = {}
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False
        self.clusters = FakeClusters(self)
        """`/v2/clusters*` (tests/fakes/runpod_clusters.py): `clusters.spending_limit`, `clusters.lose_member`."""

    # -- server ----------------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on 127.0.0.1:0; returns the base url (no trailing slash, no /v2)."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.url = await serve_on_loopback(app, handle_signals=False, shutdown_timeout=0.5,
                                                         access_log=None)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for path, text in ((self.runpodctl, RUNPODCTL.replace("/usr/bin/env python3", sys.executable)),
                           (self.wrapper_entrypoint, WRAPPER_ENTRYPOINT), (self.server_entrypoint, SERVER_ENTRYPOINT)):
            path.write_text(text)
            path.chmod(0o755)
        self._stopping = False
        self._ticker = asyncio.create_task(self._tick_forever())
        return self.url

    async def stop(self) -> None:
        """Kill every executed container process, stop the server."""
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for pod_id in list(self.procs):
            self._kill(pod_id)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- test API --------------------------------------------------------------------------------------------

    def live_pods(self) -> list[dict[str, Any]]:
        """Pod records whose status is not TERMINATED."""
        return [p for p in self.pods.values() if p["status"] != "TERMINATED"]

    def pod_key(self, pod_id: str) -> str:
        """The pod-scoped API key of a pod (RUNPOD_API_KEY inside it)."""
        return str(self.pods[pod_id]["_key"])

    def queue_fault(self, kind: str, **opts: Any) -> None:
        """The next request gets this fault (see the module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        self._faults.append((kind, opts))

    def set_gpu_util(self, pod_id: str, util: int, mem: int) -> None:
        self.pods[pod_id]["_gpu_util"] = (int(util), int(mem))

    def add_log(self, pod_id: str, line: str, source: str = "container") -> None:
        if source not in ("container", "system"):
            raise ValueError("source is container or system")
        self._log(pod_id, line, source)

    def log_lines(self, pod_id: str, source: str | None = None) -> list[str]:
        return [e.line for e in self.logs.get(pod_id, []) if source is None or e.source == source]

    def restart_container(self, pod_id: str) -> None:
        """Restart the pod's container now, as RunPod does when its main process exits."""
        pod = self.pods[pod_id]
        if pod["status"] not in ("STARTING", "RUNNING"):
            raise ValueError(f"pod {pod_id} is {pod['status']}: no container to restart")
        self._restart(pod, "container restarted")

    def fail_pod(self, pod_id: str, line: str = "container error: unrecoverable") -> None:
        """Put a pod in ERROR (its container is killed)."""
        pod = self.pods[pod_id]
        self._kill(pod_id)
        self._log(pod_id, line, "system")
        pod["status"] = "ERROR"
        self._sync(pod)

    def check_response(self, operation_id: str, status: int, body: Any) -> None:
        """Raise AssertionError unless `body` is what the document allows for this operation and status."""
        op = OPERATIONS[operation_id]
        responses = op.node["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            raise AssertionError(f"{operation_id}: status {status} is not documented")
        resp_ptr = op.ptr + pointer("responses", key)
        response = responses[key]
        if "$ref" in response:
            resp_ptr = response["$ref"].split("#", 1)[1]
            response = resolve(response["$ref"])
        content = response.get("content")
        if not content:
            if body is not None:
                raise AssertionError(f"{operation_id} {status}: the document says no body, got {body!r}")
            return
        ctype = next(iter(content))
        if ctype == "text/event-stream":
            return
        errors = schema_errors(resp_ptr + pointer("content", ctype, "schema"), body)
        if errors:
            raise AssertionError(f"{operation_id} {status} ({ctype}): " + "; ".join(errors))

    # -- request pipeline ------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(f"{request.method} {request.rel_url}")
        if request.rel_url.raw_path == "/graphql" and request.method == "POST":
            return await self._graphql(request, raw)
        op, path_id, allowed = self._route(request)
        call = op.call if op is not None else f"{request.method} {request.path}"
        if raw:
            try:
                self.bodies.append((call, json.loads(raw)))
            except ValueError:
                self.bodies.append((call, raw.decode(errors="replace")))
        fault = self._take_fault(call, graphql=False)
        if fault is not None:
            answer = await self._apply_fault(request, op, *fault)
            if answer is not None:
                return answer
        self.calls.append(call)
        principal = self._principal(request)
        if isinstance(principal, Problem):
            return self._web(op, Reply(principal.status, principal.body(), principal.headers), rate={})
        rate, exceeded = self._consume_rate()
        try:
            if exceeded is not None:
                name, reset = exceeded
                raise Problem(429, f"rate limit exceeded for the {name} window", headers={"Retry-After": str(reset)})
            if op is None:
                if allowed:
                    raise Problem(405, f"method {request.method} not allowed on {request.path}",
                                  headers={"Allow": ", ".join(allowed)})
                raise Problem(404, f"no route for {request.method} {request.path}")
            self._check_scope(principal, op, path_id)
            query = self._query(request, op)
            body = self._body(op, raw)
            if op.id == "getPodLogs":
                return await self._stream_logs(request, path_id or "", query, rate)
            reply = await self._dispatch(request, op, path_id, query, body)
        except Problem as problem:
            reply = Reply(problem.status, problem.body(), problem.headers)
        except _Raw as answer:
            return answer.response
        return self._web(op, reply, rate)

    def _web(self, op: Operation | None, reply: Reply, rate: dict[str, str]) -> web.Response:
        if __debug__ and self.validate_responses and op is not None:
            try:
                self.check_response(op.id, reply.status, reply.body)
            except AssertionError as exc:
                self.response_errors.append(str(exc))
                raise
        headers = {**rate, **reply.headers}
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        ctype = "application/problem+json" if reply.status >= 400 else "application/json"
        return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), content_type=ctype,
                            headers=headers)

    def _route(self, request: web.Request) -> tuple[Operation | None, str | None, list[str]]:
        segments = [unquote(s) for s in request.rel_url.raw_path.split("/")[1:]]
        allowed: list[str] = []
        for op_id in ROUTED:
            op = OPERATIONS[op_id]
            parts = op.template.split("/")[1:]
            if len(parts) != len(segments):
                continue
            path_id = None
            for part, seg in zip(parts, segments, strict=True):
                if part == "{id}" and seg:
                    path_id = seg
                elif part != seg:
                    break
            else:
                if op.method == request.method:
                    return op, path_id, []
                allowed.append(op.method)
        return None, None, allowed

    def _take_fault(self, call: str, graphql: bool) -> tuple[str, dict[str, Any]] | None:
        for i, (kind, opts) in enumerate(self._faults):
            if graphql and not opts.get("graphql"):
                continue
            if "call" in opts and opts["call"] != call:
                continue
            del self._faults[i]
            return kind, opts
        return None

    async def _apply_fault(self, request: web.Request, op: Operation | None, kind: str,
                           opts: dict[str, Any], graphql: bool = False) -> web.StreamResponse | None:
        self.calls.append(f"fault:{kind}")
        if kind == "hang":
            await asyncio.sleep(float(opts.get("seconds", 35)))
            return None
        if kind == "reset":
            return self._reset(request)
        if kind in ("502", "503"):
            text = "Bad Gateway" if kind == "502" else "Service Temporarily Unavailable"
            return web.Response(status=int(kind), text=cloudflare_html(int(kind), text), content_type="text/html",
                                headers={"Server": "cloudflare", "CF-RAY": secrets.token_hex(8) + "-AMS"})
        if kind == "garbage":
            return web.Response(status=200, body=GARBAGE, content_type="application/json")
        if graphql:
            if kind == "429":
                return web.Response(status=429, text="Too Many Requests",
                                    headers={"Retry-After": str(opts.get("retry_after", 1))})
            return web.json_response({"errors": [{"message": SOMETHING_WRONG}]}, status=500)
        if kind == "429":
            retry = int(opts.get("retry_after", 1))
            rate, _ = self._consume_rate(minute_override=(0, retry))
            problem = Problem(429, "rate limit exceeded for the minute window", headers={"Retry-After": str(retry)})
        else:
            rate, _ = self._consume_rate()
            problem = Problem(500, "an internal error occurred; please retry")
        return self._web(op, Reply(problem.status, problem.body(), problem.headers), rate)

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()  # no answer at all: the client sees the connection drop
        return web.Response(status=500)

    def _principal(self, request: web.Request) -> str | tuple[str, str] | Problem:
        header = request.headers.get("Authorization")
        if not header:
            return Problem(401, "missing bearer token")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return Problem(401, "malformed authorization header: want 'Bearer <api_key>'")
        key = key.strip()
        if key == self.api_key:
            return "account"
        if key in self.read_only_keys:
            return "read-only"
        if key in self._keys:
            return ("pod", self._keys[key])
        return Problem(401, "invalid API key")

    def _consume_rate(self, minute_override: tuple[int, int] | None = None
                      ) -> tuple[dict[str, str], tuple[str, int] | None]:
        now = time.time()
        state, exceeded = [], None
        for name, quota, window in self.rate_limits:
            start, used = self._windows.get(name, (now, 0))
            if now >= start + window:
                start, used = now, 0
            used += 1
            self._windows[name] = (start, used)
            reset = max(1, math.ceil(start + window - now))
            if used > quota and exceeded is None:
                exceeded = (name, reset)
            remaining = max(quota - used, 0)
            if name == "minute" and minute_override is not None:
                remaining, reset = minute_override
            state.append(f'"{name}";r={remaining};t={reset}')
        policy = ", ".join(f'"{name}";q={quota};w={window}' for name, quota, window in self.rate_limits)
        headers = {"RateLimit": ", ".join(state), "RateLimit-Policy": policy}
        return headers, (exceeded if self.enforce_rate_limit else None)

    def _check_scope(self, principal: str | tuple[str, str], op: Operation, path_id: str | None) -> None:
        if principal == "account":
            return
        if principal == "read-only":  # a key created with read access only: every read, no write
            if op.call.startswith("GET "):
                return
            raise Problem(403, "access denied")
        _, own = principal
        if op.id in ("getPod", "deletePod", "podAction", "getPodLogs") and path_id == own:
            return
        raise Problem(403, f"access denied: this API key is scoped to pod {own}")

    def _query(self, request: web.Request, op: Operation) -> dict[str, Any]:
        values: dict[str, Any] = {}
        errors: list[str] = []
        for param, schema_ptr in op.params:
            if param["in"] != "query" or param["name"] not in request.query:
                continue
            name = param["name"]
            value = _coerce(",".join(request.query.getall(name)), param["schema"])
            errors += schema_errors(schema_ptr, value, root=f"query.{name}")
            values[name] = value
        if errors:
            raise Problem(422, "Request validation failed.", errors=errors)
        return values

    @staticmethod
    def _body(op: Operation, raw: bytes) -> Any:
        ptr = op.body_pointer()
        if ptr is None:
            return None
        # A body that is not JSON at all is "malformed" (BadRequestError: 400); 422 (UnprocessableEntityError) is
        # for bodies that are "syntactically valid but failed validation".
        if not raw.strip():
            raise Problem(400, "request body is required (application/json)")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise Problem(400, f"request body is not valid JSON: {exc}") from None
        errors = schema_errors(ptr, body)
        if errors:
            raise Problem(422, "Request validation failed.", errors=errors)
        return body

    async def _dispatch(self, request: web.Request, op: Operation, path_id: str | None, query: dict[str, Any],
                        body: Any) -> Reply:
        pid = path_id or ""
        if op.id == "listPods":  # cluster members only when asked for (the parameter's default is false)
            members = bool(query.get("includeClusterPods"))
            return Reply(200, {"pods": [self._view(p) for p in self.pods.values()
                                        if self._visible(p) and (members or not p.get("cluster"))]})
        if op.id == "createCluster":
            return await self._create(request, body, cluster=True)
        if op.id in CLUSTER_OPS:
            return await self.clusters.dispatch(op.id, pid, body)
        if op.id == "getPod":
            return Reply(200, self._view(self._pod(pid, lag=True)))
        if op.id == "createPod":
            return await self._create(request, body)
        if op.id in ("updatePod", "deletePod", "podAction"):
            self.clusters.refuse_member(self._pod(pid))
        if op.id == "updatePod":
            return Reply(200, self._update(self._pod(pid), body))
        if op.id == "deletePod":
            pod = self._pod(pid)
            if self.pod_delete_denied and self._principal(request) != "account":
                self.calls.append("denied:deletePod")
                raise Problem(404, f"pod {pid} not found or is not accessible to the caller")
            self._terminate(pod)
            return Reply(204)
        if op.id == "podAction":
            pod = self._pod(pid)
            if self.pod_delete_denied and body["action"] == "terminate" and self._principal(request) != "account":
                raise Problem(404, f"pod {pid} not found or is not accessible to the caller")
            return self._action(pod, body["action"])
        if op.id == "getSshKeys":
            return Reply(200, {"keys": list(self.ssh_keys)})
        if op.id == "updateSshKeys":
            self.ssh_keys = list(body["keys"])
            return Reply(200, {"keys": list(self.ssh_keys)})
        if op.id == "listGpuTypes":
            avail = _catalog_rules(query)
            gpus = [self._gpu_type(g, query, avail) for g in self.gpus]
            if avail and query.get("countryCodes"):
                gpus = [g for g in gpus if g.get("dataCenters")]
            return Reply(200, {"gpus": gpus})
        if op.id == "getGpuType":
            avail = _catalog_rules(query)
            gpu = next((g for g in self.gpus if g["id"] == pid), None)
            if gpu is None:
                raise Problem(404, f"GPU type {pid!r} not found")
            return Reply(200, self._gpu_type(gpu, query, avail))
        if op.id == "listDataCenters":
            return Reply(200, {"dataCenters": [self._data_center(dc, query) for dc in self.data_centers
                                               if _dc_matches(dc, query)]})
        if op.id == "getDataCenter":
            dc = next((d for d in self.data_centers if d["id"] == pid), None)
            if dc is None:
                raise Problem(404, f"data center {pid!r} not found")
            return Reply(200, self._data_center(dc, query))
        if op.id in VOLUME_OPS:
            return self._network_volume_op(op.id, pid, body)
        raise Problem(404, f"{op.id} is not implemented by the fake")

    def _network_volume_op(self, op_id: str, vid: str, body: Any) -> Reply:
        """The document's network-volume operations. Assumed where it is silent: an unknown data center or a
        tier the data center does not offer is a 400 (its `networkVolumeTypes`); a volume a live pod mounts
        cannot be deleted (400)."""
        if op_id == "listNetworkVolumes":
            return Reply(200, {"networkVolumes": list(self.network_volumes.values())})
        if op_id == "createNetworkVolume":
            dc = next((d for d in self.data_centers if d["id"] == body["dataCenter"]), None)
            if dc is None:
                raise Problem(400, f"unknown data center {body['dataCenter']!r}")
            kind = body.get("type") or dc["networkVolumeTypes"][0]
            if kind not in dc["networkVolumeTypes"]:
                raise Problem(400, f"data center {dc['id']} offers no {kind} network volumes")
            vid = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
            volume = {"id": vid, "name": body["name"], "size": body["size"], "dataCenter": dc["id"], "type": kind}
            self.network_volumes[vid] = volume
            return Reply(201, dict(volume))
        volume = self.network_volumes.get(vid)
        if volume is None:
            raise Problem(404, f"network volume {vid} not found")
        if op_id == "getNetworkVolume":
            return Reply(200, dict(volume))
        if op_id == "updateNetworkVolume":
            if "size" in body and body["size"] < volume["size"]:
                raise Problem(400, "network volume storage cannot be reduced")
            volume.update({k: body[k] for k in ("name", "size") if k in body})
            return Reply(200, dict(volume))
        users = [p["id"] for p in self.live_pods()
                 if any(m.get("volumeId") == vid for m in (p.get("mounts") or {}).get("network", []))]
        if users:
            raise Problem(400, f"network volume {vid} is attached to pod {users[0]}")
        del self.network_volumes[vid]
        return Reply(204)

    # -- pods ------------------------------------------------------------------------------------------------

    def _visible(self, pod: dict[str, Any]) -> bool:
        return (pod["status"] != "TERMINATED" and time.time() - pod["_created"] >= self.list_lag_s
                and not (self.spot_unlisted and pod.get("_spot")))

    def _pod(self, pod_id: str, lag: bool = False) -> dict[str, Any]:
        pod = self.pods.get(pod_id)
        if (pod is None or pod["status"] == "TERMINATED" or (lag and not self._visible(pod))
                or (self.spot_unlisted and pod.get("_spot"))):
            raise Problem(404, f"pod {pod_id} not found")
        return pod

    async def _create(self, request: web.Request, body: dict[str, Any], cluster: bool = False) -> Reply:
        view = self.clusters.create(body) if cluster else self._view(self._place(body))
        fault, self.create_fault = self.create_fault, None
        if fault is None:
            return Reply(201, view)
        if fault not in CREATE_FAULT_KINDS:
            raise ValueError(f"unknown create_fault {fault!r}; one of {CREATE_FAULT_KINDS}")
        self.calls.append(f"fault:create:{fault}")
        if fault == "500":
            raise Problem(500, "an internal error occurred; please retry")
        if fault == "502":
            raise _Raw(web.Response(status=502, text=cloudflare_html(502, "Bad Gateway"), content_type="text/html",
                                    headers={"Server": "cloudflare"}))
        if fault == "reset":
            raise _Raw(self._reset(request))
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            raise Problem(504, "upstream request timeout")
        raise _Raw(web.Response(status=201, body=GARBAGE, content_type="application/json"))

    def _data_centers_for(self, body: dict[str, Any], cloud: str) -> list[dict[str, Any]]:
        """Where a pod or cluster create may land: its dataCenterIds (all when none), narrowed to its network
        volume's (Secure Cloud only)."""
        requested = list(body.get("dataCenterIds") or [])
        known = {dc["id"] for dc in self.data_centers}
        unknown = [d for d in requested if d not in known]
        if unknown:
            raise Problem(400, f"unknown data center {unknown[0]!r}")
        candidates = [dc for dc in self.data_centers if not requested or dc["id"] in requested]
        for mount in (body.get("mounts") or {}).get("network") or []:  # it goes where its volume is
            volume = self.network_volumes.get(mount["volumeId"])
            if volume is None:
                raise Problem(400, f"network volume {mount['volumeId']!r} not found")
            if cloud != "SECURE":
                raise Problem(400, "network volumes are available on Secure Cloud only")
            if requested and volume["dataCenter"] not in requested:
                raise Problem(400, f"network volume {volume['id']} is in {volume['dataCenter']}, not in "
                                   f"dataCenterIds {requested}")
            candidates = [dc for dc in candidates if dc["id"] == volume["dataCenter"]]
        return candidates

    def _place(self, body: dict[str, Any]) -> dict[str, Any]:
        """Cross-field rules (400), balance (402), pool access (403), placement (400), then the pod record."""
        gpu_req, cpu_req = body.get("gpu"), body.get("cpu")
        if (gpu_req is None) == (cpu_req is None):
            raise Problem(400, "exactly one of gpu or cpu must be set")
        if gpu_req is not None and gpu_req.get("minCudaVersion") and gpu_req.get("allowedCudaVersions"):
            raise Problem(400, "gpu.minCudaVersion and a non-empty gpu.allowedCudaVersions are mutually exclusive")
        mounts = body.get("mounts") or {}
        if "persistent" in mounts and "network" in mounts:
            raise Problem(400, "mounts.persistent and mounts.network are mutually exclusive")
        if cpu_req is not None and "persistent" in mounts:
            raise Problem(400, "mounts.persistent is not allowed on a CPU pod")
        if cpu_req is not None and body.get("globalNetworking"):
            raise Problem(400, "globalNetworking requires an NVIDIA GPU")
        ports = list(body.get("ports") or [])
        _check_ports(ports)
        if "templateId" in body:
            raise Problem(404, f"template {body['templateId']!r} not found")
        if self.no_balance:
            raise Problem(402, "insufficient balance: add funds to deploy this pod")
        cloud = body.get("cloud", "SECURE")
        candidates = self._data_centers_for(body, cloud)
        if body.get("globalNetworking"):
            candidates = [dc for dc in candidates if dc["globalNetwork"]]
        if gpu_req is not None:
            gpu = next((g for g in self.gpus if g["id"] == gpu_req["id"]), None)
            if gpu is None:
                raise Problem(400, f"unknown GPU type {gpu_req['id']!r}")
            if gpu["id"] in self.forbidden_gpus:
                raise Problem(403, f"your account cannot access the {cloud} pool for {gpu['id']}")
            count = int(gpu_req.get("count", 1))
            ceiling = gpu["maxCount"][cloud.lower()]
            if not gpu[cloud.lower()] or count > ceiling:
                raise Problem(400, f"gpu.count {count} exceeds the {cloud} maximum of {ceiling} for {gpu['id']}")
            cuda = _cuda_choices(gpu_req.get("allowedCudaVersions") or None, gpu_req.get("minCudaVersion"))
            placed = next((dc for dc in candidates if self._has_capacity(gpu["id"], cloud, dc["id"])), None)
            if placed is None or not cuda:
                raise Problem(400, NO_CAPACITY)
            rate = gpu["price"][cloud.lower()]
            compute: dict[str, Any] = {"gpu": {"id": gpu["id"], "count": count}}
            cuda_version: str | None = cuda[-1]
        else:
            flavor = CPU_FLAVORS.get(cpu_req["id"])
            vcpus = int(cpu_req["vcpuCount"])
            if flavor is None:
                raise Problem(400, f"unknown CPU flavor {cpu_req['id']!r}")
            if vcpus & (vcpus - 1) or vcpus > flavor["max_vcpu"]:
                raise Problem(400, f"cpu.vcpuCount {vcpus} must be a power of two <= {flavor['max_vcpu']}")
            placed = candidates[0] if candidates else None
            if placed is None:
                raise Problem(400, NO_CAPACITY)
            rate, count = flavor["price_per_vcpu"] * vcpus, 1
            compute = {"cpu": {"id": cpu_req["id"], "vcpuCount": vcpus, "memory": vcpus * flavor["ram_per_vcpu"]}}
            cuda_version = None
        env = dict(body.get("env") or {})
        if body.get("startJupyter") and "JUPYTER_PASSWORD" not in env:
            env["JUPYTER_PASSWORD"] = secrets.token_urlsafe(12)
        return self._new_pod(
            name=body["name"], image=body["image"], args=body.get("args", ""), disk=body.get("disk", DEFAULT_DISK_GB),
            mounts=copy.deepcopy(mounts), ports=ports, env=env, registry=body.get("registry"), compute=compute,
            cloud=cloud, dc=placed["id"], cuda=cuda_version, rate=rate, count=count,
            global_networking=bool(body.get("globalNetworking")))

    def _new_pod(self, *, name: str, image: str, args: str, disk: int, mounts: dict[str, Any], ports: list[str],
                 env: dict[str, str], registry: str | None, compute: dict[str, Any], cloud: str, dc: str,
                 cuda: str | None, rate: float, count: int, global_networking: bool, spot: bool = False,
                 bid: float | None = None) -> dict[str, Any]:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        pod_id = "".join(secrets.choice(alphabet) for _ in range(14))
        while pod_id in self.pods:
            pod_id = "".join(secrets.choice(alphabet) for _ in range(14))
        now = time.time()
        key = "pod-key-" + secrets.token_hex(16)
        networking: dict[str, Any] = {"enabled": False}
        if global_networking:
            networking = {"enabled": True, "ip": f"10.65.{secrets.randbelow(250)}.{secrets.randbelow(250) + 2}",
                          "internalDns": f"{pod_id}.runpod.internal"}
        pod: dict[str, Any] = {
            "id": pod_id, "name": name, "image": image, "args": args, "disk": disk, "ports": ports, "env": env,
            "registry": registry, "status": "PROVISIONING", "actions": [], "mounts": mounts, **compute,
            "cloud": cloud, "dataCenterId": dc, "cudaVersion": cuda, "ssh": {}, "template": None, "cost": 0.0,
            "locked": False, "globalNetworking": networking, "runtime": None, "createdAt": rfc3339(now),
            "startedAt": None,
            "_created": now, "_key": key, "_rate": rate, "_count": count, "_spot": spot, "_bid": bid,
            "_starting_at": now + self.boot_delay_s / 2, "_running_at": now + self.boot_delay_s,
            "_container_t0": None, "_exited_at": None, "_gpu_util": (0, 0), "_log_offset": 0, "_log_partial": b"",
            "_tcp_ports": {int(p.split("/")[0]): 20000 + secrets.randbelow(40000) for p in ports
                           if p.endswith("/tcp")},
        }
        self.pods[pod_id] = pod
        self._keys[key] = pod_id
        self.logs[pod_id] = []
        self.restarts[pod_id] = 0
        self._log(pod_id, f"Pod {pod_id} created on a {cloud} machine in {dc}", "system")
        self._log(pod_id, f"Pulling image {image}", "system")
        self._sync(pod)
        return pod

    def _update(self, pod: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if "templateId" in body:
            raise Problem(404, f"template {body['templateId']!r} not found")
        mounts = body.get("mounts")
        if mounts:
            have = pod["mounts"]
            if "persistent" in mounts and "network" in mounts:
                raise Problem(400, "mounts.persistent and mounts.network are mutually exclusive")
            if mounts.get("network") == []:
                raise Problem(400, "clearing mounts is not supported")
            kind = next(iter(mounts))
            if kind not in have:
                raise Problem(400, f"mount kind {kind!r} was not set at create and cannot be added")
            if kind == "network" and mounts["network"][0]["volumeId"] != have["network"][0]["volumeId"]:
                raise Problem(400, "the volumeId of a network mount is immutable")
            pod["mounts"] = copy.deepcopy(mounts)
        if "ports" in body:
            _check_ports(body["ports"])
        for name in ("name", "image", "args", "disk", "ports", "env", "registry", "locked"):
            if name in body:
                pod[name] = copy.deepcopy(body[name])
        if "globalNetworking" in body:
            pod["_global_networking_next"] = body["globalNetworking"]  # takes effect on the next start/restart
        self._log(pod["id"], "Pod updated", "system")
        return self._view(pod)

    def _action(self, pod: dict[str, Any], action: str) -> Reply:
        self._sync(pod)
        if action not in pod["actions"]:
            raise Problem(409, f"action {action!r} is not valid for a pod in status {pod['status']}"
                               f" (allowed: {', '.join(pod['actions']) or 'none'})")
        now = time.time()
        if action == "terminate":
            self._terminate(pod)
            return Reply(204)
        if action == "stop":
            self._kill(pod["id"])
            self._log(pod["id"], "Stopping container", "system")
            pod["status"] = "EXITED"
            pod["_exited_at"] = None
            self._log(pod["id"], "Container stopped", "system")
        elif action == "start":
            self._log(pod["id"], "Starting pod", "system")
            pod["status"] = "STARTING"
            pod["_running_at"] = now + self.boot_delay_s / 2
            self._start_container(pod)
        else:  # restart
            self._restart(pod, "Restarting container")
        return Reply(200, self._view(pod))

    def _terminate(self, pod: dict[str, Any]) -> None:
        self._kill(pod["id"])
        self._log(pod["id"], "Pod terminated", "system")
        pod["status"] = "TERMINATED"
        self._sync(pod)

    def _advance(self, pod: dict[str, Any], now: float) -> None:
        if pod["status"] == "PROVISIONING" and now >= pod["_starting_at"]:
            self._log(pod["id"], f"Image {pod['image']} pulled", "system")
            pod["status"] = "STARTING"
            self._start_container(pod)
        if pod["status"] == "STARTING" and now >= pod["_running_at"]:
            pod["status"] = "RUNNING"
            pod["startedAt"] = rfc3339(now)
            self._log(pod["id"], "Container is running", "system")

    def _sync(self, pod: dict[str, Any]) -> None:
        """Recompute the derived fields of a record (actions, cost, ssh, runtime)."""
        now = time.time()
        self._advance(pod, now)
        status = pod["status"]
        actions = list(ACTIONS[status])
        if pod["locked"]:
            actions = [a for a in actions if a not in ("stop", "restart")]
        pod["actions"] = actions
        free = status in ("EXITED", "TERMINATED") or (self.zero_cost_at_create and status == "PROVISIONING")
        pod["cost"] = 0.0 if free else round(pod["_rate"] * pod["_count"], 4)
        running = status == "RUNNING"
        direct = None
        if running and 22 in pod["_tcp_ports"]:
            port = pod["_tcp_ports"][22]
            direct = {"host": PUBLIC_IP, "port": port, "username": "root",
                      "command": f"ssh root@{PUBLIC_IP} -p {port}"}
        user = f"{pod['id']}-64411eb2"
        pod["ssh"] = {"proxy": {"host": "ssh.runpod.io", "port": 22, "username": user,
                                "command": f"ssh {user}@ssh.runpod.io"}, "direct": direct}
        if not running:
            pod["runtime"] = None
            return
        util, mem = pod["_gpu_util"]
        runtime_ports = []
        for spec in pod["ports"]:
            number, kind = int(spec.split("/")[0]), spec.split("/")[1]
            public = pod["_tcp_ports"].get(number) if kind == "tcp" else None
            runtime_ports.append({"private": number, "public": public, "type": kind,
                                  "ip": PUBLIC_IP if kind == "tcp" else None})
        gpus = [{"util": util, "memoryUtil": mem} for _ in range(pod.get("gpu", {}).get("count", 0))]
        pod["runtime"] = {"uptime": int(now - (pod["_container_t0"] or now)), "gpus": gpus,
                          "cpu": {"util": 0}, "memory": {"util": 0}, "ports": runtime_ports}

    def _view(self, pod: dict[str, Any]) -> dict[str, Any]:
        self._sync(pod)
        return copy.deepcopy({k: v for k, v in pod.items() if not k.startswith("_")})

    def _log(self, pod_id: str, line: str, source: str) -> None:
        entries = self.logs.setdefault(pod_id, [])
        entries.append(LogEntry(len(entries) + 1, time.time(), source, line))

    def _has_capacity(self, gpu_id: str, cloud: str, dc_id: str) -> bool:
        blocked = self.no_capacity
        return not (gpu_id in blocked or (gpu_id, cloud) in blocked or (gpu_id, dc_id) in blocked)

    # -- logs ------------------------------------------------------------------------------------------------

    async def _stream_logs(self, request: web.Request, pod_id: str, query: dict[str, Any],
                           rate: dict[str, str]) -> web.StreamResponse:
        try:
            accept = request.headers.get("Accept", "*/*")
            if not any(kind in accept for kind in ("text/event-stream", "text/*", "*/*")):
                # The operation declares text/event-stream alone; an Accept that rules it out is refused (assumed:
                # the document does not say what RunPod answers; 406 is HTTP's answer).
                raise Problem(406, f"this operation answers text/event-stream only, not {accept}")
            self._pod(pod_id, lag=True)
            entries = self.logs[pod_id]
            source = query.get("source")
            wanted = [e for e in entries if source is None or e.source == source]
            last_event = request.headers.get("Last-Event-ID")
            if last_event:
                # The document types Last-Event-ID as a date-time but its own example id is "<ts>/<seq>": both
                # are accepted; "<ts>/<seq>" resumes after that event, a bare ts from that second on.
                ts, _, seq = last_event.partition("/")
                try:
                    after_t = parse_rfc3339(ts)
                    after_seq = int(seq) if seq else None
                except ValueError:
                    raise Problem(422, "Request validation failed.",
                                  errors=[f"header.Last-Event-ID: {_quote(last_event)} is not a log event id"]
                                  ) from None
                backlog = [e for e in wanted if (e.seq > after_seq if after_seq is not None
                                                 else int(e.t) >= int(after_t))]
            elif "since" in query:
                since = int(parse_rfc3339(query["since"]))
                backlog = [e for e in wanted if int(e.t) >= since]
            else:
                tail = int(query.get("tail", 100))
                backlog = wanted[len(wanted) - tail:] if tail else []
        except Problem as problem:
            return self._web(OPERATIONS["getPodLogs"], Reply(problem.status, problem.body(), problem.headers), rate)
        cursor = len(entries)
        response = web.StreamResponse(status=200, headers={
            **rate, "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        last_write = time.monotonic()
        try:
            for entry in backlog:
                await response.write(entry.sse())
            pod = self.pods[pod_id]
            while not self._stopping:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                self._drain_output(pod)
                new, cursor = entries[cursor:], len(entries)
                for entry in new:
                    if source is None or entry.source == source:
                        await response.write(entry.sse())
                        last_write = time.monotonic()
                if pod["status"] == "TERMINATED":
                    break
                if time.monotonic() - last_write > 15:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                await asyncio.sleep(0.05)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    # -- execute mode ----------------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while not self._stopping:
            try:
                self._tick()
            except Exception as exc:  # keep ticking; a broken tick must not freeze every pod
                print(f"FakeRunPodV2 tick failed: {exc!r}", file=sys.stderr)
            await asyncio.sleep(0.1)

    def _tick(self) -> None:
        now = time.time()
        for pod in list(self.pods.values()):
            if pod["status"] == "TERMINATED":
                continue
            self._advance(pod, now)
            self._drain_output(pod)
            if pod["status"] not in ("STARTING", "RUNNING") or not self.execute:
                continue
            proc = self.procs.get(pod["id"])
            code = proc.poll() if proc is not None else None
            if proc is not None and code is not None and pod["_exited_at"] is None:
                self._drain_output(pod, final=True)
                pod["_exited_at"] = now
                self._log(pod["id"], f"container exited with code {code}", "system")
            if pod["_exited_at"] is not None and now - pod["_exited_at"] >= 0.2:
                self._restart(pod, "container restarted")

    def _restart(self, pod: dict[str, Any], line: str) -> None:
        self._kill(pod["id"])
        self.restarts[pod["id"]] = self.restarts.get(pod["id"], 0) + 1
        self._log(pod["id"], line, "system")
        self._start_container(pod)

    def _home(self, pod_id: str) -> Path:
        return self.workdir / "pods" / pod_id

    def _argv(self, pod: dict[str, Any]) -> list[str]:
        entry = list(self.entrypoints.get(pod["image"], []))
        args = shlex.split(pod["args"]) if pod["args"] else []
        if not args:
            args = list(DEFAULT_CMD)  # no args: the image's CMD runs (behind the ENTRYPOINT, if any)
        return entry + args

    def _env(self, pod: dict[str, Any]) -> dict[str, str]:
        home = self._home(pod["id"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PODTUI_", "RUNPOD_"))}
        env.update(pod["env"])
        env.update(pod.get("_cluster_env") or {})  # a cluster member: RunPod's cluster env
        path = env.get("PATH", os.environ.get("PATH", ""))
        env.update(HOME=str(home), RUNPOD_POD_ID=pod["id"], RUNPOD_API_KEY=pod["_key"],
                   RUNPOD_GPU_COUNT=str(pod.get("gpu", {}).get("count", 0)), RUNPOD_DC_ID=pod["dataCenterId"],
                   RUNPOD_PUBLIC_IP=PUBLIC_IP, FAKE_RUNPOD_URL=self.url,
                   PATH=f"{self.bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{path}")
        for private, public in pod["_tcp_ports"].items():
            env[f"RUNPOD_TCP_PORT_{private}"] = str(public)
        for mount in (pod.get("mounts") or {}).get("network") or []:
            # The network volume mounted at its path: a folder per volume here, shared by every pod mounting it,
            # and the pod's settings that name a place under the mount path name the same place in that folder
            folder = self.volume_dir(mount["volumeId"])
            for key, value in list(env.items()):
                if value == mount["path"] or value.startswith(mount["path"].rstrip("/") + "/"):
                    env[key] = str(folder) + value[len(mount["path"].rstrip("/")):]
        return env

    def volume_dir(self, volume_id: str) -> Path:
        """Where an executed pod finds a network volume's files (made on first use)."""
        folder = self.workdir / "volumes" / volume_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _start_container(self, pod: dict[str, Any]) -> None:
        pod["_exited_at"] = None
        pod["_container_t0"] = time.time()
        self._log(pod["id"], "Starting container", "system")
        if not self.execute:
            return
        home = self._home(pod["id"])
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "container.log", "ab") as out:
            try:
                argv = self._argv(pod)
                self.procs[pod["id"]] = subprocess.Popen(
                    argv, cwd=home, env=self._env(pod), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            except (OSError, ValueError) as exc:  # as docker run: the container fails to start, then restarts
                out.write(f"exec {pod['args']!r}: {getattr(exc, 'strerror', None) or exc}\n".encode())
                pod["_exited_at"] = time.time()
                self._log(pod["id"], "container exited with code 127", "system")

    def _drain_output(self, pod: dict[str, Any], final: bool = False) -> None:
        """Copy new lines of container.log into the log stream."""
        if not self.execute:
            return
        path = self._home(pod["id"]) / "container.log"
        try:
            with open(path, "rb") as f:
                f.seek(pod["_log_offset"])
                data = f.read()
        except OSError:
            return
        if not data and not (final and pod["_log_partial"]):
            return
        pod["_log_offset"] += len(data)
        data = pod["_log_partial"] + data
        lines = data.split(b"\n")
        pod["_log_partial"] = lines.pop()
        if final and pod["_log_partial"]:
            lines.append(pod["_log_partial"])
            pod["_log_partial"] = b""
        for line in lines:
            self._log(pod["id"], line.decode(errors="replace").rstrip("\r"), "container")

    def _kill(self, pod_id: str) -> None:
        proc = self.procs.pop(pod_id, None)
        if proc is None:
            return
        groups = [proc.pid]  # the container's own group (the agent) first: a real container dies at once, and an
        # agent that outlived its command by a moment reported the command's death as the run's failure
        pod = self.pods.get(pod_id)
        started = (pod or {}).get("_container_t0") or 0.0
        for agent in (self._home(pod_id) / "podtui" / "agent.json", self._home(pod_id) / "agent.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if agent.stat().st_mtime >= started - 1:  # written by this container run, not a stale group id
                    groups.append(int(json.loads(agent.read_text())["child_pgid"]))
        for pgid in dict.fromkeys(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)  # a stopped or deleted container is gone at once
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if pod is not None:
            self._drain_output(pod, final=True)

    # -- GraphQL (spot only) ---------------------------------------------------------------------------------

    async def _graphql(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        if self.graphql_down:
            self.calls.append("graphql:down")
            if self.graphql_down == "404":
                return web.Response(status=404, text=cloudflare_html(404, "Not Found"), content_type="text/html")
            problem = Problem(410, "The GraphQL API has been retired; use REST API v2 (https://api.runpod.io/v2)")
            return web.Response(status=410, body=json.dumps(problem.body()).encode(),
                                content_type="application/problem+json")
        fault = self._take_fault("graphql", graphql=True)
        if fault is not None:
            answer = await self._apply_fault(request, None, *fault, graphql=True)
            if answer is not None:
                return answer
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.calls.append("graphql:unauthorized")
            return web.Response(status=401, text="Unauthorized")
        try:
            body = json.loads(raw)
            document = graphql.parse(body["query"])
            operation = document.definitions[0]
            root = "Mutation" if operation.operation.value == "mutation" else "Query"  # type: ignore[attr-defined]
            node = operation.selection_set.selections[0]  # type: ignore[attr-defined]
            name = node.name.value
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, graphql.GraphQLError):
            self.calls.append("graphql:unparsable")
            return web.json_response({"errors": [{"message": SOMETHING_WRONG,
                                                  "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}, status=400)
        self.calls.append(f"graphql:{name}")
        self.bodies.append((f"graphql:{name}", body))
        args = {a.name.value: graphql.value_from_ast_untyped(a.value) for a in node.arguments or ()}
        resolvers = {("Query", "gpuTypes"): self._r_gpu_types, ("Query", "myself"): self._r_myself,
                     ("Query", "pod"): self._r_pod, ("Mutation", "podTerminate"): self._r_pod_terminate,
                     ("Mutation", "podRentInterruptable"): self._r_pod_rent_interruptable}
        resolver = resolvers.get((root, name))
        if resolver is None:
            return web.json_response({"errors": [{"message": f'Cannot query field "{name}" on type "{root}".'}]},
                                     status=400)
        try:
            result = resolver(args.get("input") or {})
            data = project(result, node.selection_set, GRAPHQL_TYPES.get(name, name))
        except GraphQLFault as exc:
            return web.json_response({"errors": [{"message": str(exc), "path": [name]}], "data": None})
        return web.json_response({"data": {name: data}})

    def _gql_gpu(self, gpu: dict[str, Any]) -> dict[str, Any]:
        spot_secure, spot_community = gpu["spot"]["secure"], gpu["spot"]["community"]

        def lowest_price(args: dict[str, Any]) -> dict[str, Any]:
            opts = args.get("input") or {}
            secure = bool(opts.get("secureCloud"))
            cloud = "SECURE" if secure else "COMMUNITY"
            level = "NONE" if not self._has_capacity(gpu["id"], cloud, "") else self.stock.get(gpu["id"], "HIGH")
            return {"minimumBidPrice": spot_secure if secure else spot_community,
                    "uninterruptablePrice": gpu["price"]["secure" if secure else "community"],
                    "stockStatus": level.capitalize(), "availableGpuCounts": [1, 2, 4, 8],
                    "maxUnreservedGpuCount": gpu["maxCount"][cloud.lower()]}

        return {"id": gpu["id"], "displayName": gpu["name"], "memoryInGb": gpu["memory"],
                "maxGpuCount": gpu["maxCount"]["secure"], "securePrice": gpu["price"]["secure"],
                "communityPrice": gpu["price"]["community"], "secureSpotPrice": spot_secure,
                "communitySpotPrice": spot_community, "manufacturer": "Nvidia", "cudaCores": 0,
                "secureCloud": gpu["secure"], "communityCloud": gpu["community"], "oneMonthPrice": None,
                "threeMonthPrice": None, "oneWeekPrice": None, "lowestPrice": lowest_price}

    def _r_gpu_types(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = args.get("id")
        out = [self._gql_gpu(g) for g in self.gpus if wanted is None or g["id"] == wanted]
        if wanted is None or wanted == "unknown":  # the live list holds this placeholder too
            out.append({"id": "unknown", "displayName": "unknown", "memoryInGb": 0, "maxGpuCount": 0,
                        "securePrice": None, "communityPrice": None, "secureSpotPrice": None,
                        "communitySpotPrice": None, "manufacturer": "unknown", "cudaCores": 0, "secureCloud": False,
                        "communityCloud": False, "oneMonthPrice": None, "threeMonthPrice": None,
                        "oneWeekPrice": None, "lowestPrice": None})
        return out

    def _gql_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        self._sync(pod)
        status = {"PROVISIONING": "CREATED", "STARTING": "CREATED"}.get(pod["status"], pod["status"])
        return {"id": pod["id"], "name": pod["name"], "desiredStatus": status, "costPerHr": pod["cost"],
                "imageName": pod["image"], "dockerArgs": pod["args"], "gpuCount": pod["gpu"]["count"],
                "podType": "INTERRUPTABLE" if pod.get("_spot") else "RESERVED", "uptimeSeconds": 0,
                "env": [f"{k}={v}" for k, v in pod["env"].items()], "machineId": "m-" + pod["id"][:6],
                "runtime": None, "lastStatusChange": "Rented by User"}

    def _r_pod(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """GraphQL `pod(input: {podId})`: the pod, or null once it is gone (as the SDK's get_pod reads it)."""
        pod = self.pods.get(str(args.get("podId")))
        if pod is None or pod["status"] == "TERMINATED":
            return None
        return self._gql_pod(pod)

    def _r_pod_terminate(self, args: dict[str, Any]) -> None:
        """GraphQL `podTerminate(input: {podId})`: null, whether or not there was such a pod (reported)."""
        pod = self.pods.get(str(args.get("podId")))
        if pod is not None and pod["status"] != "TERMINATED":
            self._terminate(pod)

    def _r_myself(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"id": "user-1", "pubKey": "", "networkVolumes": []}

    def _r_pod_rent_interruptable(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("bidPerGpu") is None:
            raise GraphQLFault("bidPerGpu is required")
        gpu = next((g for g in self.gpus if g["id"] == args.get("gpuTypeId")), None)
        if gpu is None:
            raise GraphQLFault(f'GPU type "{args.get("gpuTypeId")}" not found')
        if self.no_balance:
            raise GraphQLFault("insufficient balance: add funds to deploy this pod")
        cloud = "COMMUNITY" if args.get("cloudType") == "COMMUNITY" else "SECURE"
        spot = gpu["spot"][cloud.lower()]
        dc = next((d for d in self.data_centers if self._has_capacity(gpu["id"], cloud, d["id"])), None)
        # Without allowedCudaVersions any host takes the pod, the oldest driver first (assumed); with it, only
        # the hosts of those versions (matched exactly, as v2's create does).
        allowed = args.get("allowedCudaVersions")
        cudas = [v for v in CUDA_VERSIONS if v in allowed] if allowed else CUDA_VERSIONS[:1]
        if spot is None or dc is None or gpu["id"] in self.forbidden_gpus or not cudas:
            raise GraphQLFault(NO_CAPACITY)
        bid = float(args["bidPerGpu"])
        spot += self.bid_floor_rise.get(gpu["id"], 0.0)  # the minimum moved since the price was read
        if bid < spot:
            raise GraphQLFault(f"Your bid price (${bid}/hr) is below the minimum bid price (${spot}/hr).")  # assumed
        count = int(args.get("gpuCount") or 1)
        env = {e["key"]: str(e["value"]) for e in args.get("env") or []}
        ports = [p.strip() for p in str(args.get("ports") or "").split(",") if p.strip()]
        pod = self._new_pod(
            name=str(args.get("name") or ""), image=str(args.get("imageName") or ""),
            args=str(args.get("dockerArgs") or ""), disk=int(args.get("containerDiskInGb") or DEFAULT_DISK_GB),
            mounts={}, ports=ports, env=env, registry=None, compute={"gpu": {"id": gpu["id"], "count": count}},
            cloud=cloud, dc=dc["id"], cuda=cudas[-1], rate=spot, count=count, global_networking=False,
            spot=True, bid=bid)
        self._sync(pod)
        return {"id": pod["id"], "name": pod["name"], "imageName": pod["image"], "dockerArgs": pod["args"],
                "env": [f"{k}={v}" for k, v in env.items()], "machineId": "m-" + pod["id"][:6],
                "machine": {"podHostId": f"{pod['id']}-64411eb2", "gpuDisplayName": gpu["name"]},
                "desiredStatus": "RUNNING", "costPerHr": pod["cost"], "gpuCount": count,
                "podType": "INTERRUPTABLE", "containerDiskInGb": pod["disk"], "volumeInGb": args.get("volumeInGb", 0),
                "volumeMountPath": args.get("volumeMountPath"), "ports": ",".join(ports),
                "lastStatusChange": "Rented by User", "memoryInGb": 62, "vcpuCount": 8, "uptimeSeconds": 0,
                "runtime": None}

    # -- catalog ---------------------------------------------------------------------------------------------

    def _gpu_type(self, gpu: dict[str, Any], query: dict[str, Any], avail: bool) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in gpu.items() if k != "spot"}
        if not avail:
            return out
        cloud = query.get("cloud", "SECURE")
        count = int(query.get("count", 1))
        countries = query.get("countryCodes")
        dcs = [dc for dc in self.data_centers if not countries or dc["_country"] in countries]
        cuda = _cuda_choices(query.get("cudaVersions"), query.get("minCudaVersion"), widen_major=True)
        offered = gpu[cloud.lower()] and count <= gpu["maxCount"][cloud.lower()] and bool(cuda)
        levels = []
        for dc in dcs:
            ok = offered and self._has_capacity(gpu["id"], cloud, dc["id"])
            levels.append((dc, self.stock.get(gpu["id"], "HIGH") if ok else "NONE"))
        rank = ["NONE", "LOW", "MEDIUM", "HIGH"]
        overall = max((level for _, level in levels), key=rank.index, default="NONE")
        out["availability"] = overall
        listed = [{"id": dc["id"], "name": dc["name"], "availability": level} for dc, level in levels
                  if level != "NONE"]
        if listed:  # "omitted entirely when the configuration is unavailable everywhere"
            out["dataCenters"] = listed
        out["cudaVersions"] = [{"version": v, "available": overall != "NONE"} for v in cuda]
        return out

    def _data_center(self, dc: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in dc.items() if not k.startswith("_")}
        include = query.get("include") or []
        if "GPU_AVAILABILITY" in include:
            out["gpuAvailability"] = [
                {"id": g["id"], "name": g["name"],
                 "availability": self.stock.get(g["id"], "HIGH") if any(
                     self._has_capacity(g["id"], c, dc["id"]) for c in ("SECURE", "COMMUNITY")) else "NONE"}
                for g in self.gpus]
        if "CPU_AVAILABILITY" in include:
            out["cpuAvailability"] = [{"id": k, "name": v["name"], "availability": "HIGH"}
                                      for k, v in CPU_FLAVORS.items()]
        return out


class _Raw(Exception):
    """A ready aiohttp answer that bypasses the problem path (create faults)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("raw answer")
        self.response = response


GRAPHQL_TYPES = {"myself": "User", "gpuTypes": "GpuType", "podRentInterruptable": "Pod", "pod": "Pod",
                 "lowestPrice": "LowestPrice",
                 "machine": "PodMachine", "runtime": "PodRuntime", "networkVolumes": "NetworkVolume"}


def project(value: Any, selection_set: Any, typename: str) -> Any:
    """Keep only the selected fields, recursively (as a GraphQL server answers); unknown fields are errors."""
    if selection_set is None or value is None:
        return value
    if isinstance(value, list):
        return [project(v, selection_set, typename) for v in value]
    out = {}
    for selection in selection_set.selections:
        key = selection.name.value
        if key not in value:
            raise GraphQLFault(f'Cannot query field "{key}" on type "{typename}".')
        item = value[key]
        if callable(item):
            item = item({a.name.value: graphql.value_from_ast_untyped(a.value) for a in selection.arguments or ()})
        out[selection.alias.value if selection.alias else key] = project(item, selection.selection_set,
                                                                          GRAPHQL_TYPES.get(key, key))
    return out


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """A query-string value as the type its parameter schema declares (left a string when it is not one)."""
    schema = _deref(schema)
    kind = schema.get("type")
    if kind == "array":
        return [_coerce(v, schema.get("items", {})) for v in value.split(",")] if value else []
    if kind == "integer" and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if kind == "number":
        with contextlib.suppress(ValueError):
            return float(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _catalog_rules(query: dict[str, Any]) -> bool:
    """The catalog's cross-parameter rules (400); True when availability was asked for."""
    avail = "AVAILABILITY" in (query.get("include") or [])
    if avail and not query.get("product"):
        raise Problem(400, "product is required with include=AVAILABILITY")
    if query.get("product") and not avail:
        raise Problem(400, "product is valid only with include=AVAILABILITY")
    for name in ("count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion"):
        if name in query and not avail:
            raise Problem(400, f"{name} is valid only with include=AVAILABILITY")
    if "cudaVersions" in query and "minCudaVersion" in query:
        raise Problem(400, "cudaVersions and minCudaVersion are mutually exclusive")
    return avail


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _cuda_choices(allowed: list[str] | None, minimum: str | None, widen_major: bool = False) -> list[str]:
    """The offered CUDA versions a constraint admits (exact set, or a numeric floor; a bare major on the catalog)."""
    if allowed:
        return [v for v in CUDA_VERSIONS if v in allowed]
    if minimum:
        floor = _version(minimum)
        if widen_major and len(floor) == 1:
            return [v for v in CUDA_VERSIONS if _version(v)[0] >= floor[0]]
        return [v for v in CUDA_VERSIONS if _version(v) >= floor]
    return list(CUDA_VERSIONS)


def _check_ports(ports: list[str]) -> None:
    bad = [p for p in ports if not re.fullmatch(r"\d{1,5}/(http|tcp)", p) or not 0 < int(p.split("/")[0]) < 65536]
    if bad:
        raise Problem(400, f"ports must be formatted as <port>/http or <port>/tcp: {bad[0]!r}")
    if sum(p.endswith("/http") for p in ports) > 10:
        raise Problem(400, "at most 10 HTTP ports may be exposed")


def _dc_matches(dc: dict[str, Any], query: dict[str, Any]) -> bool:
    if query.get("regions") and dc["region"] not in query["regions"]:
        return False
    if any(v not in dc["networkVolumeTypes"] for v in query.get("networkVolumeTypes") or []):
        return False
    if any(c not in dc["compliance"] for c in query.get("compliance") or []):
        return False
    return "globalNetwork" not in query or dc["globalNetwork"] == query["globalNetwork"]
