"""The code bundle: a tarball of the launch's workdir (honouring .gitignore) that the pod unpacks."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pathspec


class BundleError(ValueError):
    """The workdir cannot be bundled; the message says why and what to do."""


ALWAYS_SKIPPED = [".git/", "__pycache__/", "*.pyc", ".venv/", "venv/", ".mypy_cache/", ".pytest_cache/"]


def _ignore_spec(root: Path) -> pathspec.GitIgnoreSpec:
    lines = list(ALWAYS_SKIPPED)
    for name in (".gitignore", ".podtuiignore"):
        try:
            lines += (root / name).read_text(errors="replace").splitlines()
        except OSError:
            pass
    return pathspec.GitIgnoreSpec.from_lines(lines)


def bundle_files(root: Path) -> list[str]:
    """Relative paths of the files that go into the bundle, sorted."""
    spec = _ignore_spec(root)
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames if not spec.match_file(rel_dir + d + "/"))
        for name in sorted(filenames):
            rel = rel_dir + name
            full = os.path.join(dirpath, name)
            if spec.match_file(rel) or os.path.islink(full) or not os.path.isfile(full):
                continue
            files.append(rel)
    return files


def build_bundle(workdir: str, out: Path, size_limit: int) -> int:
    """Write the bundle to `out`; return its size. BundleError past the size limit (checked before packing)."""
    root = Path(workdir)
    if not root.is_absolute():
        raise BundleError(f"workdir must be an absolute path, not {workdir!r}")
    if not root.is_dir():
        raise BundleError(f"workdir {workdir} is not a directory")
    files = bundle_files(root)
    total = sum((root / f).stat().st_size for f in files)
    if total > size_limit:
        raise BundleError(
            f"workdir {workdir} holds {total / 1024**2:.1f} MiB to ship, over the bundle limit of "
            f"{size_limit / 1024**2:.0f} MiB; add large files to .gitignore (or .podtuiignore), or raise "
            "PODTUI_BUNDLE_SIZE_LIMIT")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for rel in files:
            tar.add(root / rel, arcname=rel, recursive=False)
    tmp.replace(out)
    return out.stat().st_size
