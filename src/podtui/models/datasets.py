"""Datasets and volumes as the API shows them."""


from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .base import _Model


class Dataset(_Model):
    """A registered file or directory that pods download through tokens."""

    id: str
    """Derived from the name and the content (sha256): a changed file is a new dataset, and two names with the
    same content are two datasets."""
    name: str
    path: str
    kind: Literal["file", "dir", "url", "s3", "hf"]
    """file, dir: on the control plane's machine; url, s3, hf: fetched by the pod from their source."""
    size_bytes: int
    file_count: int
    sha256: str
    created_at: float
    source: str | None = None
    """What was registered, as the user gave it: the local path (a URL or hf:// / s3:// for remote sources)."""
    revision: str | None = None
    """The pinned revision of a remote source (a Hub commit); None for local files."""
    cached_on: list[str] = Field(default_factory=list)
    """Where a copy is cached besides its source: volume names."""


class DatasetCreate(_Model):
    """Register a dataset: an absolute path on the control plane's machine, or a source pods fetch themselves."""

    # exactly one of path and source (neither may be null: leave the other out)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["path"]},
                                                                           {"required": ["source"]}]})
    path: str = Field(None, min_length=1, max_length=4096, pattern=r"^/")  # type: ignore[assignment]
    """An absolute path on the control plane's machine."""
    source: str = Field(None, min_length=6, max_length=4096,  # type: ignore[assignment]
                        pattern=r"^(https?|s3|hf)://[^\x00-\x20\x7f-\x9f]+$")
    """Instead of a path: https://…, s3://BUCKET/KEY-or-PREFIX, hf://datasets/ORG/NAME[@REV][/GLOB] or
    hf://ORG/MODEL[@REV][/GLOB]."""
    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    s3_endpoint_url: str | None = Field(None, max_length=1000, pattern=r"^https?://[^\x00-\x20\x7f-\x9f]+$")
    """For an s3:// source: an S3-compatible endpoint (the control plane's setting when omitted)."""

    @model_validator(mode="after")
    def _one_of(self) -> DatasetCreate:
        if (self.path is None) == (self.source is None):
            raise ValueError("give either path (a file or folder on the control plane's machine) or source "
                             "(https://, s3://, hf://)")
        return self

    @field_validator("source", mode="before")
    @classmethod
    def _a_source(cls, value: Any) -> Any:
        """A source of a kind podtui fetches, with something after its scheme (said in words, not as a pattern)."""
        if isinstance(value, str) and not re.match(r"^(https?|s3|hf)://[^\x00-\x20\x7f-\x9f]", value):
            raise ValueError("write https://HOST/PATH, s3://BUCKET/KEY-or-PREFIX, hf://datasets/ORG/NAME[@REV][/GLOB] "
                             f"or hf://ORG/MODEL[@REV][/GLOB], not {value[:200]!r}")
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("/"):
            raise ValueError(f"give an absolute path (the control plane does not share your working directory): "
                             f"{value[:200]!r}")
        return value


class Volume(_Model):
    """Storage that outlives pods: a RunPod network volume, or a folder under the data dir (local provider)."""

    name: str
    provider: Literal["local", "runpod"]
    id: str
    """RunPod's volume id; the name for a local volume."""
    data_center: str | None = None
    size_gb: int | None = None
    type: str | None = None
    """STANDARD or HIGH_PERFORMANCE (RunPod)."""
    price_per_month: float | None = None
    """US dollars a month at RunPod's list price ($0.07/GB for the first TB, $0.05 beyond)."""
    path: str | None = None
    """Where a local volume's folder is."""
    used_bytes: int | None = None
    """Bytes in a local volume's folder."""
    in_use_by: list[str] = Field(default_factory=list)
    """Runs whose pods use it now."""
    cached: list[str] = Field(default_factory=list)
    """Datasets known to be cached on it."""


class VolumeCreate(_Model):
    """Create a volume."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    provider: Literal["local", "runpod"] | None = None
    size_gb: int | None = Field(None, ge=10, le=4096)
    """RunPod: 10 to 4096 GB (it can grow later, never shrink)."""
    data_center: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    type: Literal["STANDARD", "HIGH_PERFORMANCE"] | None = None


class DatasetPush(_Model):
    """Push a local dataset onto a RunPod network volume."""

    model_config = ConfigDict(extra="forbid")
    volume: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


