"""A fake Hugging Face Hub on 127.0.0.1 that answers as the Hub does for what podtui uses (HF_ENDPOINT):
`GET /api/{models|datasets}/{repo}[/revision/{rev}]` (repo info with the commit sha), `GET /api/.../tree/{rev}`
(the file listing; `lfs` with the sha256 as `oid`; paginated with a `Link: <...>; rel="next"` header), and
`GET|HEAD /[datasets/]{repo}/resolve/{rev}/{path}`: small files served directly, LFS files redirected (302) to
a CDN path as the Hub does. A private repo answers 401 with `X-Error-Code: RepoNotFound` without its token; an
unknown revision 404 with `X-Error-Code: RevisionNotFound`."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from . import serve_on_loopback


@dataclass
class HubRepo:
    """One repository at one commit."""

    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)
    """Paths stored in LFS (listed with their sha256, downloaded through a redirect)."""
    private: bool = False
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    branches: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeHub:
    """Repos by (type, id), the token that opens private ones, and what was asked."""

    repos: dict[tuple[str, str], HubRepo] = field(default_factory=dict)
    token: str = "hf_podtui_test_token"
    page_size: int = 2
    bytes_sent: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    def _repo(self, request: web.Request, repo_type: str) -> tuple[HubRepo, str]:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.repos.get((repo_type, repo_id))
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        if repo is None or (repo.private and not authorized):
            raise web.HTTPUnauthorized(headers={"X-Error-Code": "RepoNotFound",
                                                "X-Error-Message": "Repository not found"})
        rev = request.match_info.get("rev", "main")
        if rev not in (repo.commit, "main", *repo.branches):
            raise web.HTTPNotFound(headers={"X-Error-Code": "RevisionNotFound",
                                            "X-Error-Message": "Invalid rev id"})
        return repo, rev

    async def info(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, None))
        repo_type = request.match_info["type"][:-1]
        repo, _ = self._repo(request, repo_type)
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        siblings = [{"rfilename": p} for p in sorted(repo.files)]
        return web.json_response({"id": repo_id, "_id": secrets.token_hex(12), "sha": repo.commit,
                                  "private": repo.private, "siblings": siblings, "tags": []})

    async def tree(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, None))
        repo, _ = self._repo(request, request.match_info["type"][:-1])
        entries = []
        folders = sorted({"/".join(p.split("/")[:i]) for p in repo.files for i in range(1, p.count("/") + 1)})
        for folder in folders:
            entries.append({"type": "directory", "oid": secrets.token_hex(20), "size": 0, "path": folder})
        for path in sorted(repo.files):
            data = repo.files[path]
            entry = {"type": "file", "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                     "size": len(data), "path": path}
            if path in repo.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        start = int(request.query.get("cursor", "0"))
        page = entries[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(entries):
            nxt = request.url.update_query({"cursor": str(start + self.page_size)})
            headers["Link"] = f'<{nxt}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Range")))
        repo_type = "dataset" if request.path.startswith("/datasets/") else "model"
        repo, _ = self._repo(request, repo_type)
        path = request.match_info["path"]
        if path not in repo.files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"})
        data = repo.files[path]
        if path in repo.lfs:
            raise web.HTTPFound(f"{self.url}/cdn/{hashlib.sha256(data).hexdigest()}")
        return await self._send(request, data, f'"{hashlib.sha1(data).hexdigest()}"')

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Range")))
        sha = request.match_info["sha"]
        for repo in self.repos.values():
            for path in repo.lfs:
                if hashlib.sha256(repo.files[path]).hexdigest() == sha:
                    return await self._send(request, repo.files[path], f'"{sha}"')
        raise web.HTTPNotFound()

    async def _send(self, request: web.Request, data: bytes, etag: str) -> web.StreamResponse:
        start, status, total = 0, 200, len(data)
        wanted = request.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[len("bytes="):].partition("-")
            start = int(first)
            data = data[start:int(last) + 1 if last else len(data)]
            status = 206
        response = web.Response(status=status, body=b"" if request.method == "HEAD" else data,
                                headers={"ETag": etag, "Accept-Ranges": "bytes"})
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{total}"
        if request.method != "HEAD":
            self.bytes_sent += len(data)
        return response

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/{type:models|datasets}/{org}/{name}/revision/{rev}", self.info)
        app.router.add_get("/api/{type:models|datasets}/{org}/{name}", self.info)
        app.router.add_get("/api/{type:models|datasets}/{org}/{name}/tree/{rev}", self.tree)
        for prefix in ("/datasets", ""):
            app.router.add_route("*", prefix + "/{org}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        app.router.add_route("*", "/cdn/{sha}", self.cdn)
        self.runner, self.url = await serve_on_loopback(app)
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
