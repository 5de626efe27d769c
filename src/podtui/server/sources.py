"""Datasets that pods fetch from their source themselves, never through the control plane's machine: an https
URL, an S3 key or prefix, a Hugging Face dataset or model.

Registering one lists it here (sizes, ETags, the Hub commit it is pinned to); a launch turns that listing into
the pod's fetch plan (bootstrap/fetch.py): plain URLs, presigned S3 URLs (no S3 secret enters a pod), Hub
`resolve` URLs at the pinned commit (a Hub token travels only in the start script, over the pod's ingest
token). Blocking clients (httpx sync, boto3, huggingface_hub): run these in a thread.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from ..config import Settings
from ..models import Dataset
from .datasets import DatasetError, ScannedDataset, dataset_id_of

REMOTE_KINDS = ("url", "s3", "hf")


class SourceError(DatasetError):
    """A source that cannot be registered, with the status the API answers: 404 nothing there; 409 anything else
    (it cannot be reached or refused the listing, what is there cannot be a dataset, a setting is missing here).
    Never a 5xx: the control plane did not fail."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status
PRESIGN_TTL_S = 24 * 3600
"""How long a pod's presigned S3 URLs last: a long download finishes; a leaked plan soon stops working."""
_HF = re.compile(r"^hf://(?:(?P<type>datasets|models)/)?(?P<org>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)"
                 r"(?:@(?P<rev>[\w.-]+))?(?:/(?P<glob>.+))?$", re.ASCII)


@dataclass
class HubRepo:
    """An hf:// source, parsed."""

    repo_type: str
    repo_id: str
    revision: str | None
    glob: str | None


def kind_of(source: str) -> str | None:
    """The remote kind a source names (`url`, `s3`, `hf`), or None for a local path."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    return {"https": "url", "http": "url", "s3": "s3", "hf": "hf"}.get(scheme)


def parse_hf(source: str) -> HubRepo:
    """hf://datasets/ORG/NAME[@REV][/GLOB] or hf://ORG/MODEL[@REV][/GLOB]."""
    match = _HF.match(source)
    if not match:
        raise SourceError(f"{source!r} is not a Hub source; write hf://datasets/ORG/NAME[@REV][/GLOB] or "
                           "hf://ORG/MODEL[@REV][/GLOB]")
    repo_type = "dataset" if match["type"] == "datasets" else "model"
    return HubRepo(repo_type, f"{match['org']}/{match['name']}", match["rev"], match["glob"])


def parse_s3(source: str) -> tuple[str, str]:
    """s3://BUCKET/KEY-or-PREFIX -> (bucket, key or prefix)."""
    bucket, _, key = source[len("s3://"):].partition("/")
    if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
        raise SourceError(f"{source!r}: {bucket!r} is not an S3 bucket name; write s3://BUCKET/KEY-or-PREFIX")
    return bucket, key


def _default_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")
    return (name or "dataset")[:100]


def _listing_digest(kind: str, source: str, manifest: list[dict[str, Any]]) -> str:
    """The identity of a remote listing: what was registered (paths, sizes, ETags, known sha256s). Fixed at
    registration, so the cache key it gives does not move when a first fetch records an https file's sha256."""
    rows = [[e["path"], e["size"], e.get("etag"), e.get("sha256")] for e in manifest]
    return hashlib.sha256(json.dumps([kind, source, rows], separators=(",", ":")).encode()).hexdigest()


def _remote(kind: str, source: str, name: str, manifest: list[dict[str, Any]], revision: str | None = None,
            extra: dict[str, Any] | None = None) -> ScannedDataset:
    if not manifest:
        raise SourceError(f"{source} holds no files", status=404)
    digest = _listing_digest(kind, source, manifest)
    single = len(manifest) == 1 and kind == "url"
    dataset = Dataset(id=dataset_id_of(name, digest), name=name, path=source, kind=kind,
                      size_bytes=sum(int(e["size"]) for e in manifest), file_count=len(manifest),
                      sha256=str(manifest[0].get("sha256") or "") if single else digest, created_at=time.time(),
                      source=source, revision=revision)
    # the root of a remote dataset is its source's settings (JSON): what a plan needs besides the manifest
    return ScannedDataset(dataset, json.dumps({"source": source, "digest": digest, **(extra or {})}), manifest)


def scan_source(source: str, name: str | None, settings: Settings,
                s3_endpoint_url: str | None = None) -> ScannedDataset:
    """List a remote source (blocking: run it in a thread)."""
    kind = kind_of(source)
    if kind == "url":
        return _scan_url(source, name)
    if kind == "s3":
        return _scan_s3(source, name, s3_endpoint_url or settings.s3_endpoint_url)
    if kind == "hf":
        return _scan_hf(source, name, settings)
    raise SourceError(f"{source!r}: a source is https://…, s3://…, or hf://…")


# -- https ---------------------------------------------------------------------------------------------------

def _scan_url(url: str, name: str | None) -> ScannedDataset:
    try:
        parts = urlsplit(url)
        url.encode("ascii")
    except (ValueError, UnicodeError):
        raise SourceError(f"{url!r} is not a URL a pod can fetch (write non-ASCII characters %-encoded)") from None
    if not parts.netloc:
        raise SourceError(f"{url!r} has no host")
    try:
        with httpx.Client(follow_redirects=True, timeout=30, trust_env=True) as http:
            r = http.head(url)
            size = r.headers.get("Content-Length") if r.status_code == 200 else None
            if r.status_code in (405, 501) or (r.status_code == 200 and size is None):
                # no HEAD, or no length in it: ask for the first byte, the total is in Content-Range
                with http.stream("GET", url, headers={"Range": "bytes=0-0"}) as g:
                    r = g
                    total = g.headers.get("Content-Range", "").rpartition("/")[2]
                    size = total if g.status_code == 206 and total.isdigit() else g.headers.get("Content-Length")
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise SourceError(f"cannot reach {url}: {exc}", status=409) from None
    if r.status_code >= 400:
        raise SourceError(f"{url} answered HTTP {r.status_code}; check the URL (and that it needs no login)",
                          status=404 if r.status_code in (404, 410) else 409)
    if size is None or not str(size).isdigit():
        raise SourceError(f"{url} does not say its size (no Content-Length); podtui needs it to resume and "
                           "verify the download")
    filename = unquote(parts.path.rstrip("/").rpartition("/")[2]) or "download"
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", filename).lstrip(".") or "download"
    entry = {"path": filename, "size": int(size), "etag": r.headers.get("ETag"), "sha256": None,
             "resumable": r.headers.get("Accept-Ranges", "").lower() == "bytes" or r.status_code == 206}
    return _remote("url", url, name or _default_name(filename), [entry])


# -- S3 ------------------------------------------------------------------------------------------------------

def _s3_client(endpoint_url: str | None) -> Any:
    import boto3  # deferred: ~0.3 s, and only s3:// sources need it
    from botocore.config import Config

    # a session per use: the credential chain is read as it is now (boto3's default session keeps the first)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None,
                                          config=Config(signature_version="s3v4", retries={"max_attempts": 3}))


def _s3_problem(exc: Exception, source: str) -> DatasetError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return SourceError("no AWS credentials where the control plane runs: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) there and restart it; pods never get them")
    if isinstance(exc, EndpointConnectionError):
        return SourceError(f"cannot reach the S3 endpoint for {source}: {exc}; check PODTUI_S3_ENDPOINT_URL "
                            "(or --s3-endpoint)", status=409)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return SourceError(f"S3 refused listing {source}: {code or exc}",
                           status=404 if code in ("NoSuchBucket", "404") else 409)
    return SourceError(f"listing {source} failed: {exc}", status=409)


def _scan_s3(source: str, name: str | None, endpoint_url: str | None) -> ScannedDataset:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3(source)
    manifest: list[dict[str, Any]] = []
    try:
        client = _s3_client(endpoint_url)
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
                manifest = [{"path": _default_name(key.rpartition("/")[2]), "key": key,
                             "size": int(head["ContentLength"]), "etag": head.get("ETag"), "sha256": None}]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        if not manifest:
            prefix = key if not key or key.endswith("/") else key + "/"
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(prefix):]
                    if not rel or rel.endswith("/"):
                        continue  # folder markers
                    if any(p in ("", ".", "..") for p in rel.split("/")) or "\n" in rel:
                        raise SourceError(f"s3://{bucket}/{obj['Key']}: a key podtui cannot place safely")
                    manifest.append({"path": rel, "key": obj["Key"], "size": int(obj["Size"]),
                                     "etag": obj.get("ETag"), "sha256": None})
    except DatasetError:
        raise
    except (BotoCoreError, ClientError) as exc:
        raise _s3_problem(exc, source) from None
    if not manifest:
        raise SourceError(f"{source} holds no object (nothing at that key, nothing under that prefix)",
                          status=404)
    default = key.rstrip("/").rpartition("/")[2] or bucket
    single = manifest[0]["path"] if len(manifest) == 1 and manifest[0]["key"] == key else None
    return _remote("s3", source, name or _default_name(default), manifest,
                   extra={"bucket": bucket, "endpoint_url": endpoint_url, "single": single})


# -- the Hugging Face Hub ---------------------------------------------------------------------------------------

def _scan_hf(source: str, name: str | None, settings: Settings) -> ScannedDataset:
    from huggingface_hub import HfApi  # deferred: ~0.5 s
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.hf_api import RepoFile

    repo = parse_hf(source)
    api = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token or None)
    try:
        info = api.repo_info(repo.repo_id, repo_type=repo.repo_type, revision=repo.revision)
        commit = info.sha
        if not commit:
            raise SourceError(f"the Hub gave no commit for {source}", status=409)
        entries = api.list_repo_tree(repo.repo_id, repo_type=repo.repo_type, revision=commit, recursive=True)
        manifest = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            if repo.glob and not fnmatch.fnmatch(entry.path, repo.glob) and \
                    not entry.path.startswith(repo.glob.rstrip("/") + "/"):
                continue
            lfs = entry.lfs
            manifest.append({"path": entry.path, "size": int(entry.size),
                             "sha256": getattr(lfs, "sha256", None) if lfs else None, "etag": None})
    except GatedRepoError:
        raise SourceError(f"{repo.repo_id} is gated: accept its terms on the Hub, then set HF_TOKEN where the "
                           "control plane runs") from None
    except RepositoryNotFoundError:
        raise SourceError(f"no {repo.repo_type} {repo.repo_id} on {settings.hf_endpoint} (or it is private: set "
                           "HF_TOKEN where the control plane runs)", status=404) from None
    except RevisionNotFoundError:
        raise SourceError(f"{repo.repo_id} has no revision {repo.revision!r}", status=404) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:  # ValueError: the client's own id checks
        raise SourceError(f"the Hub at {settings.hf_endpoint} failed listing {repo.repo_id}: {exc}",
                          status=409) from None
    except SourceError:
        raise
    except Exception as exc:  # the client's transport errors (its own httpx's) share no base class to import
        raise SourceError(f"cannot reach the Hub at {settings.hf_endpoint} ({type(exc).__name__}: {exc}); check "
                          "this machine's network, or set HF_ENDPOINT to a Hub it can reach") from None
    if not manifest:
        raise SourceError(f"{source}: no file of {repo.repo_id} at {commit[:12]} matches {repo.glob!r}",
                          status=404)
    default = repo.repo_id.rpartition("/")[2]
    return _remote("hf", source, name or _default_name(default), manifest, revision=commit,
                   extra={"repo_type": repo.repo_type, "repo_id": repo.repo_id})


# -- the pod's fetch plan ---------------------------------------------------------------------------------------

def cache_key(dataset: Dataset, root: str) -> str:
    """The dataset's folder name in a cache (`<mount>/podtui/datasets/<key>/`): its content, never its name, so
    two names with the same content share one copy."""
    if dataset.kind in REMOTE_KINDS:
        return f"{dataset.kind}-{json.loads(root)['digest'][:40]}"
    return f"{dataset.kind}-{dataset.sha256[:40]}"


def fetch_plan(dataset: Dataset, root: str, manifest: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """What the pod fetches for a remote dataset, with URLs it can use as they are (blocking: presigning)."""
    meta = json.loads(root)
    files: list[dict[str, Any]] = []
    if dataset.kind == "url":
        for entry in manifest:
            files.append({"url": meta["source"], "path": entry["path"], "size": entry["size"],
                          "etag": entry.get("etag"), "sha256": entry.get("sha256") or entry.get("fetched_sha256")})
    elif dataset.kind == "s3":
        try:
            client = _s3_client(meta.get("endpoint_url"))
            for entry in manifest:
                url = client.generate_presigned_url("get_object", Params={"Bucket": meta["bucket"],
                                                                          "Key": entry["key"]},
                                                    ExpiresIn=PRESIGN_TTL_S)
                files.append({"url": url, "path": entry["path"], "size": entry["size"], "etag": entry.get("etag"),
                              "sha256": entry.get("fetched_sha256")})
        except Exception as exc:  # botocore's errors share no base class with its config errors
            raise _s3_problem(exc, dataset.source or dataset.path) from None
    elif dataset.kind == "hf":
        base = settings.hf_endpoint.rstrip("/")
        prefix = "datasets/" if meta["repo_type"] == "dataset" else ""
        headers = {"Authorization": f"Bearer {settings.hf_token}"} if settings.hf_token else {}
        for entry in manifest:
            url = f"{base}/{prefix}{meta['repo_id']}/resolve/{dataset.revision}/{quote(entry['path'])}"
            files.append({"url": url, "path": entry["path"], "size": entry["size"], "etag": None,
                          "sha256": entry.get("sha256"), "headers": headers})
    else:
        raise DatasetError(f"dataset {dataset.name} is not fetched from a source")
    single = manifest[0]["path"] if dataset.kind == "url" else meta.get("single")
    return {"name": dataset.name, "key": cache_key(dataset, root), "single": single, "parallel": 4,
            "files": files}


def local_fetch_plan(dataset: Dataset, manifest: list[dict[str, Any]], pod_url: str,
                     download_token: str) -> dict[str, Any]:
    """The plan for a dataset on the control plane's machine fetched into a volume's cache: the pod downloads
    it from the control plane (once per volume), each file checked by its registered sha256."""
    base = f"{pod_url}/api/datasets/download"
    headers = {"Authorization": f"Bearer {download_token}"}
    files = []
    for entry in manifest:
        url = base if dataset.kind == "file" else f"{base}?path={quote(entry['path'], safe='')}"
        files.append({"url": url, "path": entry["path"], "size": entry["size"], "sha256": entry["sha256"],
                      "etag": None, "headers": headers})
    return {"name": dataset.name, "key": cache_key(dataset, ""), "parallel": 4, "files": files,
            "single": manifest[0]["path"] if dataset.kind == "file" else None}


def record_fetched(manifest: list[dict[str, Any]], digests: dict[str, str]) -> list[dict[str, Any]] | None:
    """The manifest with the sha256s a pod computed at a first fetch, held to by later fetches; None when it had
    them all already. A digest unlike the one recorded is ignored here: the pod refuses such a file itself."""
    changed = False
    out = []
    for entry in manifest:
        entry = dict(entry)
        got = digests.get(entry["path"])
        if got and re.fullmatch(r"[0-9a-f]{64}", got) and not entry.get("sha256") \
                and not entry.get("fetched_sha256"):
            entry["fetched_sha256"] = got
            changed = True
        out.append(entry)
    return out if changed else None


def is_remote(kind: str) -> bool:
    """A dataset its pod fetches from its source."""
    return kind in REMOTE_KINDS

