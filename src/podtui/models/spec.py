"""The launch spec: what the user asks for when launching a run, with its durations, env names and image."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from .base import _Model
from .limits import MAX_DURATION_S, MAX_NODES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """`90`, `90s`, `15m`, `2h`, `1d` -> seconds; numbers pass through."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 15m or 2h")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration; write it like 90s, 15m or 2h")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


Duration = Annotated[
    float, BeforeValidator(parse_duration), Field(ge=0, le=MAX_DURATION_S),
    # The documented string forms stay within 30 days: 999999s, 9999m, 719h, 29d (the parser takes up to 30d).
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
                              {"type": "string", "pattern": r"^([0-9]{1,6}(\.[0-9]+)?s?|[0-9]{1,4}(\.[0-9]+)?m|"
                                                            r"([0-9]{1,2}|[0-6][0-9]{2}|7[01][0-9])(\.[0-9]+)?h|"
                                                            r"([0-9]|[12][0-9])(\.[0-9]+)?d)$"}]}),
]
"""Seconds, or text like 90s, 15m, 2h, 1d (at most 30 days)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
EnvName = Annotated[str, Field(pattern=_ENV_NAME.pattern)]
EnvValue = Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")]


DEFAULT_IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
"""RunPod's current PyTorch image (CUDA 12.8.1, torch 2.8, Python 3.12)."""
_CUDA_TAG = re.compile(r"(?:^|[-_:])cu(?:da)?(\d{2})\.?(\d)")


def cuda_of_image(image: str) -> str | None:
    """The CUDA version an image's tag names (`cu1281` -> 12.8, `cuda11.8.0` -> 11.8), or None."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = _CUDA_TAG.search(tag)
    return f"{int(match.group(1))}.{match.group(2)}" if match else None


class LaunchSpec(_Model):
    """What the user asks for when launching a run."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    """Dataset name or id."""
    gpu_types: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=10, json_schema_extra={"uniqueItems": True})
    """GPU type ids in fallback order."""
    command: str | None = Field(None, max_length=10_000)
    """Training command; the demo trainer when omitted and the dataset is `demo`."""
    workdir: str | None = Field(None, max_length=4096, pattern=r"^/")
    """A directory on the control plane's machine shipped to the pod as a code bundle."""
    provider: str | None = Field(None, pattern=r"^(local|runpod)$")
    name: str | None = Field(None, min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    gpu_count: int = Field(1, ge=1, le=8)
    cloud_type: Literal["SECURE", "COMMUNITY", "ALL"] = "SECURE"
    spot: bool = False
    image: str = Field(DEFAULT_IMAGE, min_length=1, max_length=300, pattern=r"^[^\x00-\x20]+$")
    """Container image; RunPod's current PyTorch image by default."""
    min_cuda_version: str | None = Field(None, pattern=r"^\d{1,2}\.\d{1,2}$")
    """Lowest CUDA version of the host (`12.8`); read from the image's tag (`cu1281`, `cuda11.8.0`) when omitted."""
    ssh: bool = False
    """Expose 22/tcp and start sshd (RunPod): off by default, it narrows Community capacity."""
    min_gpu_util_pct: float | None = Field(None, ge=0, le=100)
    """Warn when the pod's GPU use stays below this percentage while training."""
    min_gpu_util_s: Duration = 600
    """How long GPU use must stay below min_gpu_util_pct before the warning (default 10 min)."""
    connect: Literal["push", "pull"] | None = None
    """push: the pod calls the control plane at its public URL; pull: the control plane calls the pod (through
    RunPod's HTTPS proxy), for a laptop with no public URL. Chosen at launch when omitted (see Settings)."""
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=40,
                                         json_schema_extra={"additionalProperties": False})
    max_runtime_s: Duration | None = None
    """Terminate the pod after this long (seconds, or `2h`); None or 0: no limit."""
    budget_usd: float | None = Field(None, ge=0, le=100_000)
    """Terminate the pod once it has cost this much; None or 0: no limit."""
    keep_alive_s: Duration = 1800
    """After the command ends, the longest the pod may stay to bring its outputs home (default 30 min): it ends
    as soon as they are home. 0 ends it at once (the outputs then stay in the pod and are lost with it)."""
    outputs: str = Field("outputs", min_length=1, max_length=255, pattern=r"^[^/\x00][^\x00]*$")
    """The pod's outputs folder ($PODTUI_OUTPUT_DIR), relative to the workdir."""
    sync_outputs_s: Duration | None = Field(None)
    """Also bring the outputs home every this long while the command runs (e.g. `10m`); None or 0: only at the
    end and on demand. A sync that finds nothing new costs one small request."""
    container_disk_gb: int = Field(20, ge=5, le=2000)
    metrics: Literal["auto", "json", "off"] | None = None
    """How the pod reads metrics from the output: auto, json (JSON lines only) or off; the setting when omitted."""
    metrics_ranks: Literal["0", "all"] | None = None
    """Whose metrics count when lines carry a launcher's rank prefix: rank 0's, or all (`rank<N>/<name>`)."""
    retries: int | None = Field(None, ge=0, le=20)
    """How many times a lost pod (gone, exited, restarted, silent, failed to boot) is replaced by a new one that
    resumes the run; decided at launch when omitted (2 on RunPod, 0 on the local provider)."""
    retry_failed: bool = False
    """Also retry when the training command itself exits non-zero (off: a failing command ends the run)."""
    volume: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """A volume to mount (`podtui volumes`): datasets are cached on it and reused by later runs with no transfer;
    HF_HOME points into it. On RunPod a network volume: the pod is placed in its data center, Secure Cloud."""
    dataset_changed_ok: bool = False
    """Launch even though the local dataset changed since it was registered: it is hashed again and registered
    anew under its name (otherwise such a launch is refused before any pod is made)."""
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    """Pods (nodes) of the run, each with gpu_count GPUs; more than one is a RunPod cluster (POST /v2/clusters) or
    that many local pods, every one with the torchrun env ($PODTUI_TORCHRUN)."""
    outputs_from: Literal["0", "all"] = "0"
    """Whose outputs come home: node 0's, or every node's (under node<k>/)."""
    outputs_on_volume: bool = False
    """Write the outputs to the volume (`<mount>/podtui/outputs/<run id>/`, needs `volume`): they stay there,
    nothing goes through this machine unless `podtui outputs RUN --to DIR` fetches them."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not _ENV_NAME.match(key):
                raise ValueError(f"env name {key!r} must be letters, digits and _ (not starting with a digit)")
            if key.startswith(("PODTUI_", "RUNPOD_")):
                raise ValueError(f"env name {key!r} is reserved for podtui and RunPod")
            if "\x00" in value:
                raise ValueError(f"env value of {key} contains a NUL byte")
        return env

    @field_validator("max_runtime_s", "budget_usd")
    @classmethod
    def _zero_is_no_limit(cls, value: float | None) -> float | None:
        # A limit of 0 would end the run the moment it starts: people who type it mean "no limit" (as
        # sync_outputs_s's 0 means "not while it runs").
        return None if value == 0 else value

    @field_validator("outputs", mode="before")
    @classmethod
    def _relative_outputs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the type check says what is wrong
        parts = [p for p in value.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or value.startswith("/") or "\x00" in value:
            raise ValueError(f"outputs must be a folder inside the workdir, like `outputs` or `runs/out` "
                             f"(no `..`): {value[:100]!r}")
        return "/".join(parts)

    @field_validator("gpu_types")
    @classmethod
    def _unique_gpus(cls, gpus: list[str]) -> list[str]:
        if len(set(gpus)) != len(gpus):
            raise ValueError("each GPU type may be listed once")
        return gpus
