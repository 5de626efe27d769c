"""An https-like file server on 127.0.0.1 for dataset sources: HEAD, GET with Range and If-Range, strong ETags,
and faults a test can ask for (a connection cut after N bytes, HEAD refused). Counts the bytes it sends."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from aiohttp import web

from . import serve_on_loopback


@dataclass
class ServedFile:
    """One file the server offers."""

    data: bytes
    etag: str = ""

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = '"' + hashlib.md5(self.data).hexdigest() + '"'  # an ETag, not security


@dataclass
class FileServer:
    """The server's files and what it has done."""

    files: dict[str, ServedFile] = field(default_factory=dict)
    bytes_sent: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    cut_after: int | None = None
    """Cut the next GET's connection after this many bytes (once)."""
    head_allowed: bool = True
    runner: web.AppRunner | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((request.method, name, request.headers.get("Range")))
        served = self.files.get(name)
        if served is None:
            raise web.HTTPNotFound()
        if request.method == "HEAD" and not self.head_allowed:
            raise web.HTTPMethodNotAllowed("HEAD", ["GET"])
        data, start, status = served.data, 0, 200
        wanted = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range")
        if wanted.startswith("bytes=") and (if_range is None or if_range == served.etag):
            first, _, last = wanted[len("bytes="):].partition("-")
            start = int(first)
            end = int(last) + 1 if last else len(data)
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            data, status = data[start:end], 206
        headers = {"ETag": served.etag, "Accept-Ranges": "bytes", "Content-Length": str(len(data))}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(served.data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        cut, self.cut_after = self.cut_after, None
        view = memoryview(data)
        for offset in range(0, len(data), 1 << 16):
            piece = view[offset:offset + (1 << 16)]
            if cut is not None and offset + len(piece) > cut:
                await response.write(bytes(piece[:max(0, cut - offset)]))
                self.bytes_sent += max(0, cut - offset)
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(bytes(piece))
            self.bytes_sent += len(piece)
        await response.write_eof()
        return response

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/files/{name}", self.handle)
        self.runner, base = await serve_on_loopback(app)
        self.url = f"{base}/files"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
