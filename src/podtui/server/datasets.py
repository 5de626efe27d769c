"""Datasets: registering a file or a directory (content-hashed), and the path rules that keep every served
file inside its registered root."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digest import sha256_file
from ..models import Dataset

_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)


class DatasetError(ValueError):
    """A dataset cannot be registered or served; the message says why and what to do."""


@dataclass
class ScannedDataset:
    """A dataset as scanned from disk, before it is stored."""

    dataset: Dataset
    root: str
    manifest: list[dict[str, Any]]


def safe_relative_path(path: str) -> str:
    """Return `path` if it is a plain relative path of the dataset; raise DatasetError for anything that
    could leave the root: `..`, absolute paths, backslashes, NUL, empty segments, encoded separators."""
    if not path or len(path) > 4096:
        raise DatasetError("the file path is empty or too long")
    if "\x00" in path:
        raise DatasetError("the file path contains a NUL byte")
    if "\\" in path:
        raise DatasetError("the file path contains a backslash")
    if _ENCODED_SEPARATOR.search(path):
        raise DatasetError("the file path contains a percent-encoded separator or dot")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise DatasetError("the file path must be relative to the dataset")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise DatasetError("the file path must not contain '..', '.' or empty segments")
    return path


def is_inside(root: str, path: str) -> bool:
    """True when the real path `path` lies inside (or is) the real directory `root`."""
    root = os.path.realpath(root)
    path = os.path.realpath(path)
    return os.path.commonpath([root, path]) == root


def manifest_text(manifest: list[dict[str, Any]]) -> str:
    """The listing served for a directory dataset: `sha256 size path` per line (read with `read -r`)."""
    return "".join(f"{f['sha256']} {f['size']} {f['path']}\n" for f in manifest)


def scan_dataset(path_text: str, name: str | None, size_limit: int, roots: list[Path]) -> ScannedDataset:
    """Hash a file or every file of a directory (blocking: run it in a thread)."""
    if "\x00" in path_text:
        raise DatasetError("the path contains a NUL byte")
    if not os.path.isabs(path_text):
        raise DatasetError(f"give an absolute path (the control plane does not share your working directory): "
                           f"{path_text!r}")
    real = os.path.realpath(path_text)
    if not os.path.exists(real):
        raise DatasetError(f"{path_text} does not exist")
    if roots and not any(is_inside(str(r), real) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise DatasetError(f"{path_text} is outside the allowed dataset roots ({allowed}); "
                           "change PODTUI_DATASET_ROOTS to allow it")
    if os.path.isfile(real):
        root = os.path.dirname(real)
        files = [os.path.basename(real)]
        kind = "file"
    elif os.path.isdir(real):
        root = real
        files = _walk(real, size_limit)
        kind = "dir"
        if not files:
            raise DatasetError(f"{path_text} has no files")
    else:
        raise DatasetError(f"{path_text} is neither a regular file nor a directory")
    stats = {rel: os.stat(os.path.join(root, rel)) for rel in files}
    total = sum(st.st_size for st in stats.values())
    if total > size_limit:
        raise DatasetError(f"{path_text} holds {_gib(total)}, over the dataset size limit of {_gib(size_limit)}; "
                           "raise PODTUI_DATASET_SIZE_LIMIT (bytes) or register a smaller dataset")
    manifest = []
    for rel in files:
        try:
            digest = sha256_file(os.path.join(root, rel))
        except OSError as exc:
            raise DatasetError(f"cannot read {rel}: {exc.strerror}") from None
        st = stats[rel]
        manifest.append({"path": rel, "size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns})
    content = str(manifest[0]["sha256"]) if kind == "file" else \
        hashlib.sha256(manifest_text(manifest).encode()).hexdigest()
    default_name = os.path.basename(real.rstrip("/")) or "dataset"
    default_name = re.sub(r"[^A-Za-z0-9._-]", "_", default_name).lstrip("._-") or "dataset"
    final_name = name or default_name[:100]
    dataset = Dataset(id=dataset_id_of(final_name, content), name=final_name, path=real, kind=kind,
                      size_bytes=total, file_count=len(manifest), sha256=content, created_at=time.time(),
                      source=real)
    return ScannedDataset(dataset, root, manifest)


def dataset_id_of(name: str, content_sha256: str) -> str:
    """A dataset's id: its name and its content together, so that two names never share (and so never take
    over) one registration, and a changed content is a new id under the same name."""
    return hashlib.sha256(f"{name}\0{content_sha256}".encode()).hexdigest()


def first_change(root: str, manifest: list[dict[str, Any]]) -> str | None:
    """What changed in a local dataset since it was registered (the first file found gone, changed or unsafe),
    or None when every file is as registered. Only stats the files (blocking: run it in a thread)."""
    if not os.path.isdir(root):
        return f"its folder {root} is gone"
    for entry in manifest:
        try:
            resolve_served_file(root, entry)
        except DatasetError as exc:
            return str(exc).split(";")[0]
    return None


MAX_FILES = 200_000


def _walk(root: str, size_limit: int) -> list[str]:
    """The directory's files; stops early (with the reason) past the size limit or MAX_FILES files."""
    files: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                raise DatasetError(f"{os.path.relpath(full, root)} is a linked directory; "
                                   "copy it in or register its target instead")
        for filename in sorted(filenames):
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, root)
            if "\n" in rel or "\r" in rel:
                raise DatasetError(f"file name {rel!r} contains a line break; rename it")
            if os.path.islink(full) and not is_inside(root, full):
                raise DatasetError(f"{rel} links outside the dataset ({os.path.realpath(full)}); "
                                   "copy the file in instead")
            if os.path.isfile(full):
                files.append(rel.replace(os.sep, "/"))
                total += os.path.getsize(full)
                if total > size_limit:
                    raise DatasetError(f"{root} holds more than the dataset size limit of {_gib(size_limit)}; "
                                       "raise PODTUI_DATASET_SIZE_LIMIT (bytes) or register a smaller dataset")
                if len(files) > MAX_FILES:
                    raise DatasetError(f"{root} holds more than {MAX_FILES:,} files; pack them (tar, parquet "
                                       "shards) or register a subfolder")
    return files


def resolve_served_file(root: str, entry: dict[str, Any]) -> str:
    """The real path of a manifest entry, checked again at serve time: inside the root, unchanged."""
    rel = safe_relative_path(entry["path"])
    full = os.path.join(root, *rel.split("/"))
    if not is_inside(root, full):
        raise DatasetError(f"{rel} now resolves outside the dataset root")
    try:
        st = os.stat(full)
    except OSError:
        raise DatasetError(f"{rel} is gone (deleted or moved); register the dataset again") from None
    if st.st_size != entry["size"] or st.st_mtime_ns != entry["mtime_ns"]:
        how = f"size {entry['size']} -> {st.st_size} bytes" if st.st_size != entry["size"] else "modified"
        raise DatasetError(f"{rel} changed since the dataset was registered ({how}); register it again "
                           "(a changed file is a new dataset)")
    return os.path.realpath(full)


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"
