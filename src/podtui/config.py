"""Settings: environment variables `PODTUI_*`, then the TOML file `config.toml` in the user config dir, validated.

The environment wins over the file. `PODTUI_CONFIG_FILE` points at another file. Reading the sources is
`settings_sources.py` (standard library: the dashboard's first frame reads them before pydantic loads).
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .settings_sources import (
    LOG_FILE,
    STORE_FILE,
    config_file_path,
    default_data_dir,
    default_provider,
    env_names,
    env_values,
    file_values,
)

GiB = 1024**3
MiB = 1024**2
ADMIN_TOKEN_FILE = "admin_token"


class ServerSettings(BaseModel):
    """The control plane: where it listens and what URL pods use, its data dir and tokens, what it takes in
    (datasets, bundles, outputs) and its log."""

    public_url: str | None = None
    """The URL pods use to reach this control plane (https, reachable from the internet for RunPod)."""

    host: str = "127.0.0.1"
    """Address the control plane binds; 127.0.0.1 unless pods must reach it directly."""

    port: int = Field(8765, ge=0, le=65535)
    """TCP port of the control plane (0 picks a free one)."""

    data_dir: Path = Field(default_factory=default_data_dir)
    """Holds the SQLite store, the admin token, local pods' folders and code bundles."""

    config_file: Path | None = None
    """The TOML settings file; defaults to config.toml in the user config dir."""

    admin_token: str | None = None
    """The admin API token; generated into the data dir (mode 0600) on first start when unset."""

    provider: str | None = None
    """Default provider: `local` or `runpod`; `runpod` when a RunPod key is set, else `local`."""

    download_token_ttl_s: int = Field(7200, ge=60, le=7 * 24 * 3600)
    """Lifetime of a dataset download token in seconds (default 2 h, at most 7 days)."""

    dataset_size_limit: int = Field(20 * GiB, ge=1)
    """Largest dataset (file, or all files of a directory) that can be registered, in bytes."""

    bundle_size_limit: int = Field(200 * MiB, ge=1)
    """Largest code bundle (the launch's workdir, .gitignore honoured) in bytes."""

    dataset_roots: list[Path] = Field(default_factory=list)
    """When not empty, only paths inside these folders can be registered as datasets."""

    token_cleanup_interval_s: float = Field(600.0, gt=0)
    """How often the server deletes expired download tokens."""

    sse_keepalive_s: float = Field(15.0, gt=0)
    """Seconds between keep-alive comments on the live event stream."""

    outputs_limit: int = Field(50 * GiB, ge=1)
    """Most bytes of outputs brought home per run (env `PODTUI_OUTPUTS_LIMIT`); past it a file is refused with
    an event, the files already home stay and the run goes on."""

    outputs_reserve_bytes: int = Field(256 * MiB, ge=0)
    """Free space left on the data dir's disk after an output file arrives; a file that would eat into it is
    refused with an event (the disk is full, not the run)."""

    log_level: str = "INFO"
    """Level of podtui's log file (and of stderr for `podtui serve`)."""

    @field_validator("public_url")
    @classmethod
    def _strip_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public URL must be an http(s) URL like https://pods.example.com, not {value!r}")
        return value


class RunPodSettings(BaseModel):
    """RunPod: the API key and URLs, and how the control plane reaches a pod in pull mode."""

    runpod_api_key: str | None = Field(
        None, validation_alias=AliasChoices(*env_names("runpod_api_key"), "runpod_api_key")
    )
    """RunPod API key (env `RUNPOD_API_KEY`); the runpod SDK does not read the env var itself."""

    runpod_api_url: str = Field("https://api.runpod.io", pattern=r"^https?://[^\s]+$")
    """Base URL of RunPod's REST API v2 (env `PODTUI_RUNPOD_API_URL`): for a proxy, or a fake API in tests."""

    runpod_pod_api_url: str = Field("https://api.runpod.io", pattern=r"^https?://[^\s]+$")
    """The REST v2 base URL a RunPod pod uses to end itself: RunPod's own, also when runpod_api_url points at
    a proxy of yours the pod cannot (and should not) reach. Tests point it at a fake."""

    runpod_proxy_url: str = Field("https://{pod_id}-{port}.proxy.runpod.net", pattern=r"^https?://\S*\{pod_id\}")
    """How the control plane reaches a pod's HTTP port in pull mode: a template with `{pod_id}` and `{port}`."""

    pod_port: int = Field(8419, ge=1, le=65535)
    """The pod's HTTP port in pull mode (exposed as `<port>/http`; local pods get a free port instead)."""

    upload_chunk_bytes: int = Field(32 * MiB, ge=64 * 1024, le=32 * MiB)
    """Largest piece of an upload into a pod (pull mode): each must finish well inside the proxy's 100 s."""

    allow_loopback_public_url: bool = False
    """Let RunPod-provider pods use a loopback public URL: only for a fake RunPod API on this machine (tests)."""


class PodLimitSettings(BaseModel):
    """Pods' limits and defaults: the supervisor's guardrails, budgets and NaN, how long a pod waits for its
    control plane, how pods read metrics."""

    supervisor_interval_s: float = Field(5.0, gt=0)
    """How often the supervisor polls live runs' pods."""

    heartbeat_timeout_s: float = Field(300.0, gt=0)
    """A run whose pod sent no report for this long is terminated (or marked lost when its pod is gone)."""

    boot_timeout_s: float = Field(1800.0, gt=0)
    """How long a pod may boot (image pull, start script fetch) before its first report."""

    stall_timeout_s: float = Field(1800.0, gt=0)
    """A training run that prints no metric and no log line for this long is terminated as stalled."""

    pod_unreachable_limit_s: float = Field(12 * 3600.0, gt=0)
    """A pod whose command still runs ends itself only after its control plane has been unreachable this long
    (default 12 h): a laptop that sleeps or a TUI closed overnight does not kill a training run."""

    pod_limit_grace_s: float = Field(30.0, ge=0, le=3600)
    """The pod ends a run at its max runtime, budget or stall this long after the control plane would: a
    connected control plane decides first (and records why); an unreachable one is covered all the same."""

    pod_undelivered_keep_s: float = Field(1800.0, ge=0)
    """After its command ends, how long a pod waits to deliver what it has not yet delivered (default 30 min);
    it ends as soon as everything is delivered."""

    pod_end_proof_s: float = Field(120.0, gt=0)
    """How long a RunPod pod may still run after asking RunPod to end it before it reports `pod_end_failed`
    (only its own end proves it ended); it asks again with backoff from then on."""

    metrics: Literal["auto", "json", "off"] = "auto"
    """How pods read metrics from what the command prints: `auto` (JSON lines, key=value lines, Trainer dicts,
    tqdm/Lightning/Keras progress bars), `json` (JSON lines only), `off` (none; the metrics file still counts).
    A launch can choose its own (`--metrics`)."""

    metrics_ranks: Literal["0", "all"] = "0"
    """Whose metrics count in a multi-process run whose lines carry a launcher's rank prefix (`[rank1]:`): rank
    0's, or every rank's (named `rank<N>/<metric>`). A launch can choose its own (`--metrics-ranks`)."""

    stop_on_nan: bool = True
    """Terminate a run whose loss becomes NaN or infinite."""

    default_budget_usd: float | None = Field(None, ge=0)
    """Budget applied to runs launched without one (None: no default budget)."""

    local_price_per_hour: float = Field(0.0, ge=0)
    """What a local pod counts as costing per hour (0; set it to rehearse budgets on this machine)."""

    budget_warning_fraction: float = Field(0.8, gt=0, lt=1)
    """Share of the budget at which a warning event is recorded."""


class TuiSettings(BaseModel):
    """The dashboard."""

    keymap: dict[str, str] = Field(default_factory=dict)
    """Key remaps by binding id, e.g. {"run.terminate" = "ctrl+x"} under [keymap] in config.toml."""


class SourceSettings(BaseModel):
    """Dataset sources beyond this machine: S3, the Hugging Face Hub, RunPod's S3 API for volumes."""

    s3_endpoint_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    """S3-compatible endpoint for s3:// dataset sources (env `PODTUI_S3_ENDPOINT_URL`; AWS's own when unset).
    Credentials come from the standard AWS chain on this machine; pods get presigned URLs, never a secret."""

    hf_endpoint: str = Field("https://huggingface.co", pattern=r"^https?://[^\s]+$",
                             validation_alias=AliasChoices(*env_names("hf_endpoint"), "hf_endpoint"))
    """The Hugging Face Hub (env `HF_ENDPOINT`) for hf:// dataset sources."""

    runpod_s3_url: str = Field("https://s3api-{dc}.runpod.io/", pattern=r"^https?://[^\s]+$")
    """RunPod's S3-compatible API for `datasets push` (env `PODTUI_RUNPOD_S3_URL`): a template where `{dc}` is the
    volume's data center in lower case."""

    runpod_s3_access_key: str | None = None
    """RunPod's S3 API key id (env `PODTUI_RUNPOD_S3_ACCESS_KEY`, `user_…`): a separate key from the API key."""

    runpod_s3_secret: str | None = Field(None, repr=False)
    """RunPod's S3 API secret (env `PODTUI_RUNPOD_S3_SECRET`, `rps_…`)."""

    hf_token: str | None = Field(None, validation_alias=AliasChoices(*env_names("hf_token"), "hf_token"),
                                 repr=False)
    """A Hub token (env `HF_TOKEN`) for private or gated hf:// sources; a pod gets it only in its start script,
    served over its ingest token, never in the pod's create request."""


class Settings(ServerSettings, RunPodSettings, PodLimitSettings, TuiSettings, SourceSettings):
    """Everything podtui can be told, in groups (server, RunPod, pod limits, TUI: one class each, above); the
    names users set are the fields' own, flat as before: `PODTUI_PORT`, `port = 8765` in config.toml. See
    DESIGN.md (Interfaces) for the names users rely on. Made with keywords, those win over the environment, which
    wins over the file."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**file_values(config_file_path()), **_decoded(env_values()), **values})

    # -- derived values -------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        """The SQLite file."""
        return self.data_dir / STORE_FILE

    @property
    def log_file(self) -> Path:
        """podtui's log file (the TUI never logs to the terminal)."""
        return self.data_dir / LOG_FILE

    @property
    def local_url(self) -> str:
        """The URL a client on this machine uses to reach the control plane."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pod_url(self) -> str:
        """The URL handed to pods: the public URL, or the local address for local pods."""
        return self.public_url or self.local_url

    def default_connect(self, provider: str) -> str:
        """push when pods can reach this control plane (local pods; a public https URL that is not local),
        else pull."""
        if provider == "local":
            return "push"
        if self.public_url and urlsplit(self.public_url).scheme == "https" and not is_local_url(self.public_url):
            return "push"
        if self.public_url and self.allow_loopback_public_url:  # a fake RunPod on this machine (tests)
            return "push"
        return "pull"

    @property
    def default_provider(self) -> str:
        """The provider used when a launch names none."""
        return default_provider(self.provider, self.runpod_api_key)


SETTING_GROUPS: dict[str, type[BaseModel]] = {"server": ServerSettings, "RunPod": RunPodSettings,
                                              "pod limits": PodLimitSettings, "TUI": TuiSettings,
                                              "dataset sources": SourceSettings}
"""The settings' groups by title, in the order the docs list them."""


def _decoded(env: dict[str, str]) -> dict[str, Any]:
    """Environment values as the settings take them: a list or table setting is given as JSON
    (`PODTUI_KEYMAP='{"run.new": "a"}'`)."""
    out: dict[str, Any] = dict(env)
    for name, value in env.items():
        field = Settings.model_fields.get(name)
        if field is not None and get_origin(field.annotation) in (list, dict):
            try:
                out[name] = json.loads(value)
            except ValueError:
                raise ValueError(f"{env_names(name)[0]} must be JSON (a list or table), not {value[:80]!r}") from None
    return out


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a broken config file raises ValueError naming the file and the line (or the variable)."""
    path = config_file_path()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ValueError("podtui settings are invalid:\n" + "\n".join(
            setting_problem(path, err) for err in exc.errors())
            + "\nCorrect each value where it is set (that line of the file, or that variable), or remove it for "
              "its default.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"podtui settings are invalid: {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"podtui settings are invalid: {path} cannot be read ({exc.strerror})") from exc
    except Exception as exc:  # anything else a settings source raises
        raise ValueError(f"podtui settings are invalid ({path}): {exc}") from exc


def setting_problem(path: Path, error: Any) -> str:
    """One invalid setting, named where it was set: `config.toml line 3: port: …` or `PODTUI_PORT: …`."""
    loc = error.get("loc") or ("?",)
    name = str(loc[0])
    what = f"{'.'.join(str(p) for p in loc)}: {error.get('msg', 'invalid')}"
    if "input" in error and not isinstance(error["input"], dict):
        what += f" (got {str(error['input'])[:80]!r})"
    field = Settings.model_fields.get(name)
    env_names = [f"PODTUI_{name.upper()}"]
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        env_names = [str(c) for c in field.validation_alias.choices if str(c).isupper()]
    for env_name in env_names:
        if env_name in os.environ:
            return f"  {env_name} (environment): {what}"
    line = toml_line_of(path, name)
    if line is not None:
        return f"  {path} line {line}: {what}"
    return f"  {what}"


def toml_line_of(path: Path, key: str) -> int | None:
    """The line of `path` where a top-level key (or its [table]) is set, or None."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    table = None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text.startswith("["):
            table = text.strip("[] ")
            if table == key:
                return number
            continue
        if table is None and text.split("=", 1)[0].strip().strip("\"'") == key and "=" in text:
            return number
    return None


def unknown_settings(path: Path) -> list[str]:
    """Keys of the config file that are no setting (a misspelt one is otherwise ignored): `line 4: 'prot' is no
    setting (did you mean 'port'?)`."""
    import difflib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    known = set(Settings.model_fields)
    out = []
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        line = toml_line_of(path, key)
        out.append(f"{path}{f' line {line}' if line else ''}: {key!r} is no podtui setting{hint}; it is ignored")
    return out


def ensure_admin_token(settings: Settings) -> str:
    """Return the admin token, creating it (mode 0600) in the data dir on first start."""
    return settings.admin_token or ensure_secret(settings, ADMIN_TOKEN_FILE)


def resolve_admin_token(settings: Settings, given: str | None = None, given_as: str = "--token") -> tuple[
        str | None, str]:
    """The admin token every client (the dashboard and each CLI verb) uses, and where it came from, for the error
    that names it: the one given (--token), else PODTUI_ADMIN_TOKEN, else config.toml's admin_token, else the data
    dir's token file."""
    if given:
        return given, given_as
    path = settings.data_dir / ADMIN_TOKEN_FILE
    if settings.admin_token:
        from_env = os.environ.get("PODTUI_ADMIN_TOKEN", "").strip() == settings.admin_token.strip()
        return settings.admin_token, "PODTUI_ADMIN_TOKEN" if from_env else f"admin_token in {config_file_path()}"
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if token:
        return token, f"the token file {path}"
    return None, f"none found (no --token, no PODTUI_ADMIN_TOKEN, no token file {path})"


def is_local_url(url: str) -> bool:
    """Whether a URL names this machine (pods elsewhere cannot reach it)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "0.0.0.0", "::1") or host.startswith("127.")


def ensure_secret(settings: Settings, name: str) -> str:
    """A random token kept in a file of the data dir (mode 0600), made on first use (by one process only)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def public_url_problem(public_url: str | None, provider: str, allow_loopback: bool = False) -> str | None:
    """Why pods of this provider cannot use this URL, or None when they can."""
    if provider == "local":
        return None
    if not public_url:
        return ("RunPod pods need a public URL to reach this control plane. Set PODTUI_PUBLIC_URL to a public "
                "https URL, e.g. a tunnel to this port.")
    if not allow_loopback and is_local_url(public_url):
        return (f"RunPod pods cannot reach {public_url}. Set PODTUI_PUBLIC_URL to a public https URL, "
                "e.g. a tunnel to this port.")
    return None
