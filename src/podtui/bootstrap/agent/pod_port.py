"""Pull mode: the control plane comes to the pod. PodPort serves the pod's port (inputs uploaded in resumable
chunks, the start signal, the outbox by long poll and its acknowledgements, the outputs by range)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import re
import threading
import time
import typing
import urllib.parse

from .links import PullLink
from .outputs import OUTPUT_PIECE, SEND_BLOCK, hash_prefix, scan_outputs

# -- pull mode: the control plane comes to the pod -------------------------------------------------

MAX_CHUNK = 32 * 1024 * 1024  # one PUT of an input; well inside the proxy's 100 s limit
MAX_JSON = 64 * 1024
MAX_WAIT = 25.0
SLOT = re.compile(r"^(script|bundle|resume|data-[0-9]{1,6})$")
CACHE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{7,127}$")
MAX_FETCHED = 16 * 1024 * 1024  # dataset-fetched.json: a sha256 per file of the dataset


def uploads_dir(home: str, env: typing.Mapping[str, str]) -> str:
    """Where a dataset's uploaded files land: on the pod's volume when it has one (the start script then renames
    them into the volume's cache, on the same file system: no copy, and the container disk never holds them),
    else beside the other inputs. One folder per run and node: two pods never share one."""
    volume = env.get("PODTUI_VOLUME") or ""
    if not volume:
        return os.path.join(home, "inputs")
    rank = env.get("NODE_RANK") or "0"
    name = re.sub(r"[^A-Za-z0-9_-]", "_", "%s-n%s" % (env.get("PODTUI_RUN_ID") or "run", rank))[:80]
    return os.path.join(volume, "podtui", "uploads", name)


class BoundedServer(http.server.ThreadingHTTPServer):
    """At most MAX_CONNECTIONS requests at once: more are closed unanswered (the port is public)."""

    slots = threading.BoundedSemaphore(32)

    def process_request(self, request: typing.Any, client_address: typing.Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: typing.Any, client_address: typing.Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


PENDING = (202, {"pending": True, "error": "still working on it; ask again"})
"""The answer to a request whose work outlasts the proxy's patience (hashing a large file)."""


class PodPort:
    """What the control plane finds on the pod's port: inputs uploaded in chunks (resumable, sha256 checked),
    the start signal, the outbox (long poll) and its acknowledgements. Every request carries the run's pod
    token; bodies are bounded; files are named by fixed slots, never by a path from the network."""

    def __init__(self, home: str, token: str, link: PullLink) -> None:
        self.home = home
        self.dir = os.path.join(home, "inputs")
        os.makedirs(self.dir, exist_ok=True)
        self.volume = os.environ.get("PODTUI_VOLUME") or ""
        self.data_dir = uploads_dir(home, os.environ)  # made by the first piece that comes
        self.token = token.encode()
        self.link = link
        self.lock = threading.Lock()
        self.done: dict = {}
        self.started = threading.Event()
        self.last_contact = time.time()
        self.limit = int(os.environ.get("PODTUI_INPUTS_LIMIT") or 1 << 40)
        self.received = 0
        self.sent: dict = {}
        """(path, size, mtime) -> (bytes sent in order from the start, their sha256 object)."""
        self.hashes: dict = {}
        """(path, size, mtime) -> sha256 hex, once asked for."""
        self.listed: dict = {}
        """The outputs of the last listing: name -> (real path, size, mtime); only these are ever read."""
        # outputs (pull mode): the agent sets these to its own
        self.output_dir = ""
        self.outputs_done = threading.Event()
        self.answer_within = float(os.environ.get("PODTUI_POD_ANSWER_S") or 60)
        """The longest a request waits for long work (hashing a large file): RunPod's proxy ends a request at
        100 s (524), so past this the pod answers 202 and the control plane asks again."""
        self.jobs: dict = {}
        """Long work under way, by what it is for: {"done": Event, "answer": (status, body)}."""
        self.jobs_lock = threading.Lock()
        """Not `lock`: the work itself may hold that for minutes (finish hashes under it), and asking again must
        still answer 202 at once."""

    def in_background(self, key: tuple, work: typing.Callable[[], tuple]) -> tuple | None:
        """Run `work` (returning (status, body)) off the request; its answer when done within answer_within
        seconds, else None: the caller answers 202 and the same request later finds the same work."""
        with self.jobs_lock:
            job: typing.Any = self.jobs.get(key)
            if job is None:
                job = self.jobs[key] = {"done": threading.Event(), "answer": None}

                def run() -> None:
                    try:
                        job["answer"] = work()
                    except Exception as exc:  # the control plane asks again and sees it
                        job["answer"] = (500, {"error": f"{type(exc).__name__}: {exc}"})
                    job["done"].set()

                threading.Thread(target=run, daemon=True, name="pod-work").start()
        if not job["done"].wait(self.answer_within):
            return None
        with self.jobs_lock:
            if self.jobs.get(key) is job:
                del self.jobs[key]
        return typing.cast(tuple, job["answer"])

    def path(self, slot: str) -> str:
        return os.path.join(self.data_dir if slot.startswith("data-") else self.dir, slot)

    def size(self, slot: str) -> int:
        try:
            return os.path.getsize(self.path(slot))
        except OSError:
            return 0

    def state(self) -> dict:
        names = sorted(set(n for d in (self.dir, self.data_dir) if os.path.isdir(d)
                           for n in os.listdir(d) if SLOT.match(n)))
        return {"started": self.started.is_set(),
                "inputs": {n: {"size": self.size(n), "done": self.done.get(n, False)} for n in names}}

    def cached(self, key: str) -> dict:
        """Whether the volume's cache holds a dataset whole (`.complete` is written last)."""
        if not self.volume:
            return {"volume": False, "cached": False}
        marker = os.path.join(self.volume, "podtui", "datasets", key, ".complete")
        return {"volume": True, "cached": os.path.isfile(marker)}

    def fetched(self) -> typing.Optional[dict]:
        """What the start script or the fetcher said about the dataset once it was in place (the sha256s of a
        first fetch, bytes moved, a cache hit), or None before."""
        path = os.path.join(self.home, "dataset-fetched.json")
        try:
            if os.path.getsize(path) > MAX_FETCHED:
                return None
            with open(path) as f:
                found = json.load(f)
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def put(self, slot: str, offset: int, data: bytes) -> tuple:
        with self.lock:
            if self.done.get(slot):
                return 409, {"size": self.size(slot), "error": "already complete"}
            have = self.size(slot)
            if offset != have:
                return 409, {"size": have, "error": f"expected offset {have}"}
            if self.received + len(data) > self.limit:
                return 413, {"error": f"inputs over {self.limit} bytes"}
            os.makedirs(os.path.dirname(self.path(slot)), exist_ok=True)
            with open(self.path(slot), "ab") as f:
                f.write(data)
            self.received += len(data)
            return 200, {"size": have + len(data)}

    def finish(self, slot: str, sha256: str, size: int) -> tuple:
        with self.lock:
            if self.done.get(slot):
                return 200, {"size": self.size(slot), "done": True}
            digest = hashlib.sha256()
            try:
                with open(self.path(slot), "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                return 404, {"error": "nothing uploaded"}
            if self.size(slot) != size or digest.hexdigest() != sha256:
                os.unlink(self.path(slot))  # start over: a wrong byte anywhere cannot be found by offset
                return 422, {"error": "size or sha256 does not match; upload it again"}
            self.done[slot] = True
            return 200, {"size": size, "done": True}

    def list_outputs(self) -> dict:
        """The outputs folder now; remembered, so only files of a listing are ever read."""
        files, refused = scan_outputs(self.output_dir) if self.output_dir else ([], [])
        with self.lock:
            self.listed = {n: (p, s, m) for n, p, s, m in files}
        return {"files": [{"path": n, "size": s, "mtime": m} for n, _, s, m in files][:10000],
                "refused": [{"path": n, "why": w} for n, w in refused][:100]}

    def output_path(self, name: str, size: int, mtime: float) -> str | None:
        """The real path of a listed file, when it is still as listed."""
        with self.lock:
            found = self.listed.get(name)
        if found is None or found[1] != size or found[2] != mtime:
            return None
        try:
            st = os.stat(found[0])
        except OSError:
            return None
        return found[0] if st.st_size == size and st.st_mtime == mtime else None

    def output_sha256(self, path: str, size: int, mtime: float) -> str:
        """A file's sha256 (kept per version: the control plane may ask again after a restart): the hash of what
        was sent when the file went out whole and in order, else read from the file (a resumed transfer)."""
        key = (path, size, mtime)
        cache = self.hashes
        if key not in cache:
            with self.lock:
                at, digest = self.sent.pop(key, (0, None))
            whole = digest is not None and at == size
            cache[key] = (digest if whole else hash_prefix(path, size)).hexdigest()
        return str(cache[key])

    def sent_hash(self, key: tuple, offset: int) -> typing.Any:
        """A sha256 to feed the range of a file version sent from `offset`: the one of everything sent before it,
        in order from the start (a copy), or None when that is not what was sent (the pod reads the file to hash it
        instead: for a 10 GB checkpoint, a second read while the pod bills)."""
        with self.lock:
            at, digest = self.sent.get(key, (0, None))
        if offset == 0:
            return hashlib.sha256()
        return digest.copy() if digest is not None and at == offset else None

    def sent_to(self, key: tuple, offset: int, end: int, digest: typing.Any) -> None:
        """A range [offset, end) went out whole, fed to `digest`: it now covers the file up to `end` (a transfer
        started again from 0 starts it again)."""
        with self.lock:
            at, _ = self.sent.get(key, (0, None))
            if at == offset or offset == 0:
                if len(self.sent) >= 1000 and key not in self.sent:
                    self.sent.clear()  # bounded: versions abandoned mid-file
                self.sent[key] = (end, digest)

    def serve(self, port: int) -> http.server.ThreadingHTTPServer:
        pod = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 90  # a client that stops sending mid-request does not hold a thread forever

            def log_message(self, *args: object) -> None:  # the run's log has what matters; never the token
                pass

            def answer(self, code: int, obj: object = None) -> None:
                body = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def authorized(self) -> bool:
                given = self.headers.get("Authorization", "")
                ok = given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), pod.token)
                if ok:
                    pod.last_contact = time.time()
                else:
                    self.close_connection = True
                    self.answer(401, {"error": "missing or wrong token"})
                return ok

            def body(self, limit: int) -> bytes | None:
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self.close_connection = True
                    self.answer(411, {"error": "Content-Length required"})
                    return None
                if length < 0 or length > limit:
                    self.close_connection = True
                    self.answer(413, {"error": f"body over {limit} bytes"})
                    return None
                return self.rfile.read(length)

            def route(self) -> tuple:
                url = urllib.parse.urlsplit(self.path)
                return url.path.strip("/").split("/"), dict(urllib.parse.parse_qsl(url.query))

            def do_GET(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                if parts == ["v1", "state"]:
                    self.answer(200, pod.state())
                elif parts == ["v1", "outbox"]:
                    try:
                        wait = min(MAX_WAIT, max(0.0, float(query.get("wait", "0"))))
                    except ValueError:
                        wait = 0.0
                    pending = pod.link.take(wait)
                    if pending is None:
                        self.answer(204)
                    else:
                        self.answer(200, {"seq": pending[0], "report": json.loads(pending[1])})
                elif parts[:2] == ["v1", "outputs"] and len(parts) <= 3:
                    self.outputs(parts[2:], query)
                elif len(parts) == 3 and parts[:2] == ["v1", "cache"] and CACHE_KEY.match(parts[2]):
                    self.answer(200, pod.cached(parts[2]))
                elif parts == ["v1", "fetched"]:
                    found = pod.fetched()
                    if found is None:
                        self.answer(204)
                    else:
                        self.answer(200, found)
                else:
                    self.answer(404, {"error": "no such route"})

            def outputs(self, rest: list, query: dict) -> None:
                """GET /v1/outputs (the listing), /v1/outputs/file?path=&size=&mtime=&offset=&length= (a range),
                /v1/outputs/sha256?path=&size=&mtime=. Only files of the last listing are read."""
                if not rest:
                    self.answer(200, pod.list_outputs())
                    return
                try:
                    name, size, mtime = query["path"], int(query["size"]), float(query["mtime"])
                    offset, length = int(query.get("offset", "0")), int(query.get("length", "0"))
                except (KeyError, ValueError):
                    self.answer(400, {"error": "path, size, mtime (and offset, length) are required"})
                    return
                path = pod.output_path(name, size, mtime)
                if path is None:
                    self.answer(409, {"error": "not in the listing, or changed since"})
                elif rest == ["sha256"]:
                    found = path
                    self.answer(*pod.in_background(("sha256", path, size, mtime), lambda: (200, {
                        "sha256": pod.output_sha256(found, size, mtime), "size": size, "mtime": mtime}))
                                or PENDING)
                elif rest == ["file"] and 0 <= offset <= size and 0 <= length <= OUTPUT_PIECE:
                    self.send_range(path, offset, min(length, size - offset), (path, size, mtime))
                else:
                    limit = OUTPUT_PIECE >> 20
                    self.answer(400, {"error": f"want an offset within the file and a length up to {limit} MiB"})

            def send_range(self, path: str, offset: int, length: int, key: tuple) -> None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 (closed by the with below; a failed open answers 409)
                except OSError:
                    self.answer(409, {"error": "the file is gone"})
                    return
                digest = pod.sent_hash(key, offset)
                if digest is not None and length == 0:
                    pod.sent_to(key, offset, offset, digest)
                with f:
                    f.seek(offset)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    left = length
                    while left > 0:
                        block = f.read(min(SEND_BLOCK, left))
                        if not block:  # it shrank: the control plane sees a short body and the hash will not match
                            self.close_connection = True
                            return
                        left -= len(block)
                        if digest is not None:
                            digest.update(block)
                            if left == 0:
                                # before the last bytes go: the next request may come on another connection as
                                # soon as they arrive. Should they not, the control plane asks from an offset short
                                # of this one, and the hash is read from the file instead.
                                pod.sent_to(key, offset, offset + length, digest)
                        self.wfile.write(block)

            def do_PUT(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                if len(parts) != 3 or parts[:2] != ["v1", "inputs"] or not SLOT.match(parts[2]):
                    self.close_connection = True
                    self.answer(404, {"error": "no such input"})
                    return
                try:
                    offset = int(query.get("offset", "0"))
                except ValueError:
                    offset = -1
                data = self.body(MAX_CHUNK)
                if data is not None:
                    self.answer(*pod.put(parts[2], offset, data))

            def do_POST(self) -> None:
                if not self.authorized():
                    return
                parts, query = self.route()
                raw = self.body(MAX_JSON)
                if raw is None:
                    return
                if len(parts) == 4 and parts[:2] == ["v1", "inputs"] and SLOT.match(parts[2]) \
                        and parts[3] == "done":
                    try:
                        size = int(query.get("size", ""))
                    except ValueError:
                        self.answer(400, {"error": "size must be an integer"})
                        return
                    slot, sha256 = parts[2], query.get("sha256", "")
                    self.answer(*pod.in_background(("inputs", slot, sha256, size),
                                                   lambda: pod.finish(slot, sha256, size)) or PENDING)
                elif parts == ["v1", "start"]:
                    missing = [n for n in ("script",) if not pod.done.get(n)]
                    if missing:
                        self.answer(409, {"error": "inputs missing: " + ", ".join(missing)})
                        return
                    pod.started.set()
                    self.answer(200, {"started": True})
                elif parts == ["v1", "outputs", "done"]:
                    pod.outputs_done.set()
                    self.answer(200, {"done": True})
                elif parts == ["v1", "ack"]:
                    try:
                        obj = json.loads(raw)
                        number, reply = int(obj["seq"]), obj.get("reply") or {}
                    except (ValueError, KeyError, TypeError):
                        self.answer(400, {"error": "want {seq, reply}"})
                        return
                    if not isinstance(reply, dict):
                        reply = {}
                    self.answer(200 if pod.link.ack(number, reply) else 409, {"seq": number})
                else:
                    self.answer(404, {"error": "no such route"})

        server = BoundedServer((os.environ.get("PODTUI_POD_BIND") or "0.0.0.0", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True, name="pod-port").start()
        return server
