"""Outputs: the files of $PODTUI_OUTPUT_DIR, scanned (links out refused, never followed), hashed, and in push mode
sent home by OutputSender in resumable pieces."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import typing
import urllib.parse

from .output_names import output_name_problem, printable

if typing.TYPE_CHECKING:
    from .supervisor import Agent

# -- outputs: the files of $PODTUI_OUTPUT_DIR brought home ---------------------------------------------

OUTPUT_PIECE = 64 * 1024 * 1024  # bytes per PUT: a tunnel in front of the control plane often caps a body at 100 MB
SEND_BLOCK = 1 << 20


def scan_outputs(root: str) -> tuple:
    """The files under `root` as sorted [(name, real path, size, mtime)], and the names refused [(name, why)].
    Symlinks pointing outside the folder are refused, never followed; one pointing to a file inside is sent
    under its own name; folders are walked without following links."""
    files: list = []
    refused: list = []
    real_root = os.path.realpath(root)
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = prefix + entry.name
            problem = output_name_problem(name)
            if problem:
                refused.append((printable(name), problem))
                continue
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not target.startswith(real_root + os.sep):
                        refused.append((name, "a symlink pointing outside the outputs folder (not followed)"))
                    elif os.path.isfile(target):
                        st = os.stat(target)
                        files.append((name, target, st.st_size, st.st_mtime))
                    continue  # a linked folder inside is listed under its own name already
                if entry.is_dir(follow_symlinks=False):
                    stack.append((name + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    files.append((name, entry.path, st.st_size, st.st_mtime))
            except OSError:
                continue  # gone while listed: the next sync sees what is there then
    files.sort()
    return files, refused


def hash_prefix(path: str, size: int) -> typing.Any:
    """The sha256 object of a file's first `size` bytes (to go on from an offset)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left > 0:
            block = f.read(min(SEND_BLOCK, left))
            if not block:
                raise OSError(f"{path} is shorter than {size} bytes")
            digest.update(block)
            left -= len(block)
    return digest


def hash_range(path: str, offset: int, length: int, digest: typing.Any, done: list) -> None:
    """Feed `length` bytes of a file from `offset` to `digest`; appends the count hashed to `done`."""
    count = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while count < length:
                block = f.read(min(4 * SEND_BLOCK, length - count))
                if not block:
                    break
                digest.update(block)
                count += len(block)
    except OSError:
        pass
    done.append(count)


class Refused(Exception):
    """The control plane will not take a file (cap, disk full, a bad name): not retried in this sync."""


def answer_of(raw: bytes) -> typing.Any:
    """The control plane's JSON answer ({} for an empty body or one that is not JSON)."""
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {}


def refusal_of(answer: dict, status: int) -> str:
    """Why the control plane refused: its error's message, else the status."""
    return str((answer.get("error") or {}).get("message") or f"HTTP {status}")


class OutputSender:
    """Push mode: sends what is new or changed in the outputs folder to the control plane, in pieces that resume
    from what the control plane has after any interruption, each file finished with its sha256."""

    def __init__(self, agent: Agent, url: str, run_id: str, token: str) -> None:
        self.agent = agent
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.base = parts.path.rstrip("/") + "/api/v1/runs/" + urllib.parse.quote(run_id, safe="") + "/outputs/"
        self.token = token
        self.lock = threading.Lock()
        self.conn: typing.Any = None
        self.said: set = set()
        self.deadline = 0.0  # no request of a sync outlives it: the keep-alive bound holds

    def timeout(self) -> float:
        return max(1.0, min(120.0, self.deadline - time.time()))

    def bound(self, until: float) -> None:
        """The command has ended: a pass under way gives up by `until` (the keep-alive bound) instead of its own
        later deadline, so the final pass, which waits for it, is not held past the bound."""
        if self.deadline:
            self.deadline = min(self.deadline, until)

    def connect(self) -> typing.Any:
        import http.client  # only a pushing pod with outputs needs it

        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.netloc, timeout=self.timeout())
        elif self.conn.sock is not None:
            self.conn.sock.settimeout(self.timeout())
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method: str, route: str, query: dict | None = None, body: bytes = b"") -> tuple:
        """One small request; (status, JSON answer). Connection problems raise OSError."""
        import http.client

        url = self.base + route + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = self.connect()
        try:
            conn.request(method, url, body=body, headers={"Authorization": "Bearer " + self.token,
                                                          "Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        return resp.status, answer_of(raw)

    def note_once(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            self.agent.note(text)

    def sync(self, final: bool, deadline: float, stop: threading.Event | None = None) -> tuple:
        """One sync pass: (files sent, files not home). Retries connection problems until the deadline; once
        `stop` is set no new file starts (the command ended: the final pass takes over)."""
        with self.lock:
            self.deadline = deadline
            root = self.agent.output_dir
            files, refused = scan_outputs(root)
            prefix = self.agent.output_prefix
            if prefix:  # --outputs-from all: each node's outputs under node<k>/
                files = [(prefix + n, p, s, m) for n, p, s, m in files]
                refused = [(prefix + n, w) for n, w in refused]
            # Only node 0's final pass is the run's: another node's must not cut node 0's keep-alive short.
            final = final and not self.agent.node
            for name, why in refused:
                self.note_once(f"output {name!r} not sent: {why}")
            offer = json.dumps({"files": [{"path": n, "size": s, "mtime": m} for n, _, s, m in files][:10000],
                                "refused": [{"path": n, "why": w} for n, w in refused][:100], "final": final})
            plan = self.retry(lambda: self.call("POST", "offer", body=offer.encode()), deadline)
            if plan is None:
                return 0, len(files)
            where = {n: (p, s, m) for n, p, s, m in files}
            sent = failed = 0
            for item in plan.get("files") or []:
                name = item.get("path")
                if self.agent.signalled or (stop is not None and stop.is_set()) or time.time() >= self.deadline:
                    failed += 1  # the pod is being stopped, the command ended, or the bound passed: no new file
                    continue
                if item.get("action") == "refuse":
                    failed += 1
                    self.note_once(f"output {name!r} not brought home: {item.get('reason', '')}")
                    continue
                if item.get("action") != "send" or name not in where:
                    continue
                path, size, mtime = where[name]
                try:
                    if self.send_file(name, path, size, mtime, int(item.get("offset") or 0), deadline):
                        sent += 1
                    else:
                        failed += 1
                except Refused as exc:
                    failed += 1
                    self.note_once(f"output {name!r} not brought home: {exc}")
            self.retry(lambda: self.call("POST", "synced", body=json.dumps(
                {"final": final, "sent": sent, "failed": failed}).encode()), deadline)
            return sent, failed

    def retry(self, fn: typing.Callable, deadline: float) -> dict | None:
        """fn() until it answers 2xx (its JSON) or the deadline passes (None); 401/403/404/410 end at once."""
        pause = 1.0
        while True:
            try:
                status, obj = fn()
                if 200 <= status < 300:
                    return dict(obj)
                if status in (401, 403, 404, 410):
                    self.note_once(f"the control plane refused outputs ({status}); not sending them")
                    return None
            except OSError:
                pass
            if time.time() + pause > min(deadline, self.deadline) or self.agent.signalled:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 15.0)

    def send_file(self, name: str, path: str, size: int, mtime: float, offset: int, deadline: float) -> bool:
        """Send one file from `offset`, then its sha256. True once the control plane has it home."""
        query = {"path": name, "size": size, "mtime": repr(mtime)}
        digest: typing.Any = None  # the sha256 of the file's first `offset` bytes
        pause = 1.0
        while True:
            try:
                if digest is None:
                    digest = hash_prefix(path, offset)
                if offset < size:
                    offset, digest = self.put_piece(name, path, query, offset, min(OUTPUT_PIECE, size - offset),
                                                    digest)
                    pause = 1.0
                    continue
                st = os.stat(path)
                if st.st_size != size or st.st_mtime != mtime:
                    self.agent.note(f"output {name!r} changed while it was sent; the next sync sends it again")
                    return False
                status, obj = self.call("POST", "done", dict(query, sha256=digest.hexdigest()))
                if status == 200:
                    return True
                if status == 422 and (obj.get("error") or {}).get("code") == "sha256_mismatch":
                    offset, digest = 0, None  # the control plane dropped its copy: send it all again
                    continue
                if status == 409 and isinstance(obj.get("received"), int):
                    offset, digest = obj["received"], None
                    continue
                raise Refused(refusal_of(obj, status))
            except OSError as exc:
                if not os.path.exists(path):
                    return False  # deleted while it was sent: the next sync knows
                if time.time() + pause > min(deadline, self.deadline) or self.agent.signalled:
                    self.note_once(f"output {name!r} not sent in time ({exc})")
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 15.0)
                # Ask where the control plane stands: an empty piece at our offset answers 409 with its size.
                try:
                    status, obj = self.call("PUT", "upload", dict(query, offset=offset))
                    if status == 409 and isinstance(obj.get("received"), int):
                        offset, digest = obj["received"], None
                    if status in (200, 409) and offset:
                        self.agent.note(f"resuming output {name!r} at byte {offset} of {size}")
                except OSError:
                    pass

    def put_piece(self, name: str, path: str, query: dict, offset: int, length: int,
                  digest: typing.Any) -> tuple:
        """PUT `length` bytes of the file from `offset`, hashing them on the way. (The offset the control plane
        is at, the sha256 up to it, or None when it must be computed again.)"""
        import http.client

        conn = self.connect()
        url = self.base + "upload?" + urllib.parse.urlencode(dict(query, offset=offset))
        running = digest.copy()
        # The piece is hashed in a second thread while the kernel sends it from the page cache (sendfile; plain
        # reads and sends over TLS): the pod's CPU hashes while the wire is busy. The file must not change
        # meanwhile, or the control plane's sha256 will not match and the file is sent again.
        hashed: list = []
        hasher = threading.Thread(target=hash_range, args=(path, offset, length, running, hashed), daemon=True)
        try:
            conn.putrequest("PUT", url, skip_accept_encoding=True)
            conn.putheader("Authorization", "Bearer " + self.token)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            hasher.start()
            with open(path, "rb") as f:
                if length:
                    sent = conn.sock.sendfile(f, offset, length)
                    if sent != length:
                        raise OSError(f"{name} shrank while it was sent")
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        finally:
            if hasher.ident is not None:
                hasher.join()
        if hashed != [length]:
            raise OSError(f"{name} changed while it was sent")
        obj = answer_of(raw)
        if resp.status == 200 and obj.get("received") == offset + length:
            return offset + length, running
        if resp.status == 409 and isinstance(obj.get("received"), int):
            return int(obj["received"]), None
        if resp.status in (400, 413, 422, 507):
            raise Refused(refusal_of(obj, resp.status))
        if resp.status in (401, 403, 404, 410):
            raise Refused(f"the control plane answered {resp.status}")
        raise OSError(f"HTTP {resp.status}")
