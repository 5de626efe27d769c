"""The pod's fetcher for datasets it downloads from their source itself (https, S3 through presigned URLs, the
Hugging Face Hub): never through the control plane's machine.

Standard library only, Python 3.8 compatible: it runs on any image. The start script writes it next to the
agent and runs it with a plan (JSON) the control plane rendered for this run:

    {"name": ..., "key": <cache key>, "single": <path of a one-file dataset or null>, "parallel": 4,
     "files": [{"path", "url", "size", "sha256"?, "etag"?, "headers"?}]}

and the cache root (`<volume>/podtui/datasets`, else the pod's own data folder) as its third argument.

What it does:
- The dataset lands in `<cache>/<key>/`: content-addressed, so a second run on the same volume finds it whole
  (`.complete` present) and moves no byte.
- Otherwise it downloads into `<cache>/<key>.partial-<host>/`, its own folder (two pods fetching the same key
  never write one file), files in parallel, each resumed with `Range` from the bytes it already has (`If-Range`
  with the registered ETag, so a changed file restarts instead of mixing two versions).
- Each file is checked: its size, its ETag against the registered one, its sha256 against the known one (an LFS
  file's, or the one recorded at an https file's first fetch). `.complete` is written last, then the folder is
  renamed into place; a pod that loses that race uses the winner's copy and drops its own.
- Progress goes to stdout as `##podtui progress DONE TOTAL` (the agent's download bar); the dataset's path is
  written to the file named by the second argument; the digests go back to the control plane (push mode: posted;
  pull mode: `dataset-fetched.json` beside that file, which the control plane reads through the pod's port), so
  an https file's sha256 is held to from then on.
"""

import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BLOCK = 128 << 10
"""Read, written and hashed in blocks this small, so a block is still in the CPU's cache when it is written and
hashed: on loopback (bench/fetch.py) 4 MiB blocks took 1.5-2x the CPU of 128 KiB ones, most of it in the kernel."""
BUFFERS = 64
"""Blocks being read into, written or hashed at once (8 MiB): the reader keeps draining the socket while the hash
catches up."""
HASH_BLOCK = 4 << 20
"""Reading back bytes an earlier attempt wrote, to hash them."""
RETRIES = 6


class FetchError(Exception):
    """A file cannot be fetched as registered; the message says which and what to do."""


class Progress(object):
    """Bytes done across every file, printed once a second for the agent's download bar."""

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def add(self, n):
        with self.lock:
            self.done += n

    def print_now(self):
        with self.lock:
            done = min(self.done, self.total)
        print("##podtui progress %d %d" % (done, self.total), flush=True)

    def run(self):
        while not self.stopped.wait(1.0):
            self.print_now()


def _bare_etag(value):
    """An ETag without its weak prefix and quotes, for comparing what two servers (or a CDN) say."""
    if not value:
        return ""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _log(text):
    print("%s [podtui] %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), text), flush=True)


def fetch_file(entry, dest, progress):
    """Download one file to `dest`, resuming what is there; check its size, ETag and sha256; return its sha256."""
    url, size, want_etag = entry["url"], int(entry["size"]), entry.get("etag")
    label = entry["path"]
    parent = os.path.dirname(dest)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    counted = 0  # bytes of this file already counted in the progress
    digest, hashed = None, -1  # the sha256 of dest's first `hashed` bytes, kept as the bytes arrive
    for attempt in range(RETRIES):
        have = os.path.getsize(dest) if os.path.exists(dest) else 0
        if have > size:
            os.remove(dest)
            have = 0
        if have != counted:  # more on disk than counted (a resume), or less (removed: too long, or a 416)
            progress.add(have - counted)
            counted = have
        if have == size:
            break
        headers = dict(entry.get("headers") or {})
        if have:
            headers["Range"] = "bytes=%d-" % have
            if want_etag:
                headers["If-Range"] = want_etag
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
                got_etag = r.headers.get("ETag")
                if want_etag and got_etag and _bare_etag(got_etag) != _bare_etag(want_etag):
                    raise FetchError("%s changed at its source since it was registered (ETag %s, now %s): "
                                     "register it again (`podtui datasets add SOURCE --name NAME`)"
                                     % (label, want_etag, got_etag))
                resumed = bool(have) and r.status == 206
                if have and not resumed:  # the server sent the whole file: start over
                    progress.add(-counted)
                    counted = 0
                if not resumed:
                    digest, hashed = hashlib.sha256(), 0
                elif hashed != have:  # resuming bytes an earlier attempt (or pod) wrote: hash them first
                    digest, hashed = _hash_prefix(dest, have), have
                hasher = Hasher(digest)  # hashing runs beside the download (hashlib lets go of the GIL)
                try:
                    with open(dest, "ab" if resumed else "wb", buffering=0) as out:
                        while True:
                            block = hasher.buffer()
                            n = _fill(r, block)
                            if not n:
                                hasher.give_back(block)
                                break
                            _write_all(out, memoryview(block)[:n])
                            hasher.feed(block, n)
                            hashed += n
                            progress.add(n)
                            counted += n
                finally:
                    hasher.finish()
                if hashed < size:  # the body ended early (the server closed the connection): go on from there
                    _log("fetching %s broke off at %d of %d bytes; resuming (attempt %d of %d)"
                         % (label, hashed, size, attempt + 1, RETRIES))
        except FetchError:
            raise
        except http.client.HTTPException as e:  # a connection cut mid-body (IncompleteRead), a bad answer
            _log("fetching %s broke off (%r); resuming (attempt %d of %d)" % (label, e, attempt + 1, RETRIES))
            time.sleep(min(2 ** attempt, 20))
        except urllib.error.HTTPError as e:
            if e.code == 416:  # our bytes are past the end: the file changed or ours is bad; start over
                os.remove(dest)
                continue
            if e.code in (401, 403, 404, 410):
                raise FetchError("%s: the source refused it (HTTP %d %s); check the dataset's source and its "
                                 "credentials" % (label, e.code, e.reason)) from None
            _log("fetching %s failed (HTTP %d); resuming (attempt %d of %d)" % (label, e.code, attempt + 1,
                                                                                RETRIES))
            time.sleep(min(2 ** attempt, 20))
        except (OSError, urllib.error.URLError) as e:
            _log("fetching %s failed (%s); resuming (attempt %d of %d)" % (label, e, attempt + 1, RETRIES))
            time.sleep(min(2 ** attempt, 20))
    have = os.path.getsize(dest) if os.path.exists(dest) else 0
    if have != size:
        raise FetchError("%s: got %d of %d bytes after %d attempts" % (label, have, size, RETRIES))
    if digest is None or hashed != size:
        digest = _hash_prefix(dest, size)
    sha = digest.hexdigest()
    if entry.get("sha256") and sha != entry["sha256"]:
        os.remove(dest)
        raise FetchError("%s: its sha256 %s is not the one registered (%s); the source's content changed: "
                         "register it again" % (label, sha, entry["sha256"]))
    return sha


class Hasher(object):
    """Hashes blocks in a thread of its own, so hashing overlaps the network and the disk (hashlib lets go of the
    GIL). The blocks are buffers read into again and again, not a new bytes object per read."""

    def __init__(self, digest):
        self.digest = digest
        self.free = queue.Queue()
        for _ in range(BUFFERS):
            self.free.put(bytearray(BLOCK))
        self.full = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.full.get()
            if item is None:
                return
            block, n = item
            self.digest.update(memoryview(block)[:n])
            self.free.put(block)

    def buffer(self):
        """A buffer to read into (waits while every one is still being hashed)."""
        return self.free.get()

    def give_back(self, block):
        self.free.put(block)

    def feed(self, block, n):
        """Hash the block's first n bytes; the buffer comes back once they are."""
        self.full.put((block, n))

    def finish(self):
        """Wait until every block fed is hashed."""
        self.full.put(None)
        self.thread.join()


def _fill(response, block):
    """Read into the block until it is full or the body ends; the bytes read (0 at the end)."""
    view = memoryview(block)
    got = 0
    while got < len(block):
        n = response.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _write_all(out, view):
    while len(view):
        view = view[out.write(view):]


def _hash_prefix(path, length):
    """The sha256 of a file's first `length` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            block = f.read(min(HASH_BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest


def _safe(rel):
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise FetchError("unsafe path in the plan: %r" % rel)
    return os.path.join(*parts)


def fetch_dataset(plan):
    """Fetch the plan's files into the cache; return (dataset path, digests by path, bytes moved, cache hit)."""
    cache, key = plan["cache"], plan["key"]
    if not re.match(r"^[A-Za-z0-9._-]{8,128}$", key):
        raise FetchError("bad cache key %r" % key)
    final = os.path.join(cache, key)
    files = plan["files"]
    total = sum(int(f["size"]) for f in files)
    progress = Progress(total)

    def path_in(folder):
        return os.path.join(folder, _safe(plan["single"])) if plan.get("single") else folder

    marker = os.path.join(final, ".complete")
    if os.path.isfile(marker):
        with open(marker) as f:
            digests = json.load(f).get("sha256", {})
        progress.add(total)
        progress.print_now()
        return path_in(final), digests, 0, True
    os.makedirs(cache, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_-]", "_", os.environ.get("RUNPOD_POD_ID") or socket.gethostname())[:40]
    partial = "%s.partial-%s" % (final, host)
    os.makedirs(partial, exist_ok=True)
    before = sum(os.path.getsize(os.path.join(partial, _safe(f["path"])))
                 for f in files if os.path.isfile(os.path.join(partial, _safe(f["path"]))))
    ticker = threading.Thread(target=progress.run, daemon=True)
    ticker.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, int(plan.get("parallel") or 4))) as pool:
            futures = [(f["path"], pool.submit(fetch_file, f, os.path.join(partial, _safe(f["path"])), progress))
                       for f in files]
            digests = dict((path, future.result()) for path, future in futures)
    finally:
        progress.stopped.set()
    progress.print_now()
    with open(os.path.join(partial, ".complete"), "w") as f:  # last: the folder is whole and checked
        json.dump({"sha256": digests, "at": time.time()}, f)
    try:
        os.rename(partial, final)
    except OSError:
        if not os.path.isfile(marker):
            raise
        # another pod finished the same key first: its copy is as good as ours
        shutil.rmtree(partial, ignore_errors=True)
    return path_in(final), digests, max(0, total - before), False


def report(plan, digests, moved, hit, seconds, keep=None):
    """Tell the control plane what was fetched: posted in push mode (nothing depends on it arriving); kept in
    the file `keep` for pull mode, where the control plane reads it from the pod's port."""
    said = {"sha256": digests, "bytes_moved": moved, "cache_hit": hit, "seconds": seconds, "key": plan["key"],
            "volume": plan.get("volume")}
    if keep:
        try:
            with open(keep, "w") as f:
                json.dump(said, f)
        except OSError as e:
            _log("could not keep the dataset's digests (%s)" % e)
    url, token, run_id = (os.environ.get(k) for k in ("PODTUI_URL", "PODTUI_TOKEN", "PODTUI_RUN_ID"))
    if not (url and token and run_id):
        return
    body = json.dumps(said).encode()
    req = urllib.request.Request(url.rstrip("/") + "/api/v1/runs/%s/dataset-fetched" % run_id, data=body,
                                 method="POST", headers={"Authorization": "Bearer " + token,
                                                         "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except Exception as e:  # the run goes on; the next fetch hashes again
        _log("could not tell the control plane the dataset's digests (%s)" % e)


def main(argv):
    plan_file, path_file, cache = argv[1], argv[2], argv[3]
    with open(plan_file) as f:
        plan = json.load(f)
    os.remove(plan_file)  # it may hold a Hub token
    plan["cache"] = cache
    started = time.time()
    try:
        path, digests, moved, hit = fetch_dataset(plan)
    except FetchError as e:
        _log("dataset %s: %s" % (plan.get("name"), e))
        return 1
    seconds = time.time() - started
    if hit:
        _log("dataset %s found whole in the cache (%s): 0 bytes moved" % (plan.get("name"), plan["cache"]))
    else:
        _log("dataset %s fetched from its source: %d bytes in %.1f s, sha256 checked" % (plan.get("name"), moved,
                                                                                        seconds))
    report(plan, digests, moved, hit, seconds, os.path.join(os.path.dirname(path_file), "dataset-fetched.json"))
    with open(path_file, "w") as f:
        f.write(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
