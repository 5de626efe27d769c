"""Settings: environment variables `PODTUI_*`, then the TOML file `config.toml` in the user config dir.

The environment wins over the file. `PODTUI_CONFIG_FILE` points at another file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

GiB = 1024**3
MiB = 1024**2
ADMIN_TOKEN_FILE = "admin_token"


def default_config_file() -> Path:
    """The TOML file read when `PODTUI_CONFIG_FILE` is not set."""
    return Path(platformdirs.user_config_dir("podtui")) / "config.toml"


def config_file_path() -> Path:
    """The TOML file settings are read from: `PODTUI_CONFIG_FILE`, else the default one (either may not exist)."""
    return Path(os.environ.get("PODTUI_CONFIG_FILE") or default_config_file())


def default_data_dir() -> Path:
    """Where the store, the admin token and local pods live by default."""
    return Path(platformdirs.user_data_dir("podtui"))


class Settings(BaseSettings):
    """Everything podtui can be told; see DESIGN.md (Interfaces) for the names users rely on."""

    model_config = SettingsConfigDict(env_prefix="PODTUI_", extra="ignore", validate_default=True)

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

    runpod_api_key: str | None = Field(
        None, validation_alias=AliasChoices("RUNPOD_API_KEY", "PODTUI_RUNPOD_API_KEY", "runpod_api_key")
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

    metrics: Literal["auto", "json", "off"] = "auto"
    """How pods read metrics from what the command prints: `auto` (JSON lines, key=value lines, Trainer dicts,
    tqdm/Lightning/Keras progress bars), `json` (JSON lines only), `off` (none; the metrics file still counts).
    A launch can choose its own (`--metrics`)."""

    metrics_ranks: Literal["0", "all"] = "0"
    """Whose metrics count in a multi-process run whose lines carry a launcher's rank prefix (`[rank1]:`): rank
    0's, or every rank's (named `rank<N>/<metric>`). A launch can choose its own (`--metrics-ranks`)."""
    outputs_limit: int = Field(50 * GiB, ge=1)
    """Most bytes of outputs brought home per run (env `PODTUI_OUTPUTS_LIMIT`); past it a file is refused with
    an event, the files already home stay and the run goes on."""

    outputs_reserve_bytes: int = Field(256 * MiB, ge=0)
    """Free space left on the data dir's disk after an output file arrives; a file that would eat into it is
    refused with an event (the disk is full, not the run)."""

    stop_on_nan: bool = True
    """Terminate a run whose loss becomes NaN or infinite."""

    default_budget_usd: float | None = Field(None, ge=0)
    """Budget applied to runs launched without one (None: no default budget)."""

    local_price_per_hour: float = Field(0.0, ge=0)
    """What a local pod counts as costing per hour (0; set it to rehearse budgets on this machine)."""

    budget_warning_fraction: float = Field(0.8, gt=0, lt=1)
    """Share of the budget at which a warning event is recorded."""

    keymap: dict[str, str] = Field(default_factory=dict)
    """Key remaps by binding id, e.g. {"run.terminate" = "ctrl+x"} under [keymap] in config.toml."""

    log_level: str = "INFO"
    """Level of podtui's log file (and of stderr for `podtui serve`)."""

    s3_endpoint_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    """S3-compatible endpoint for s3:// dataset sources (env `PODTUI_S3_ENDPOINT_URL`; AWS's own when unset).
    Credentials come from the standard AWS chain on this machine; pods get presigned URLs, never a secret."""

    hf_endpoint: str = Field("https://huggingface.co", pattern=r"^https?://[^\s]+$",
                             validation_alias=AliasChoices("HF_ENDPOINT", "PODTUI_HF_ENDPOINT", "hf_endpoint"))
    """The Hugging Face Hub (env `HF_ENDPOINT`) for hf:// dataset sources."""

    runpod_s3_url: str = Field("https://s3api-{dc}.runpod.io/", pattern=r"^https?://[^\s]+$")
    """RunPod's S3-compatible API for `datasets push` (env `PODTUI_RUNPOD_S3_URL`): a template where `{dc}` is the
    volume's data center in lower case."""

    runpod_s3_access_key: str | None = None
    """RunPod's S3 API key id (env `PODTUI_RUNPOD_S3_ACCESS_KEY`, `user_…`): a separate key from the API key."""

    runpod_s3_secret: str | None = Field(None, repr=False)
    """RunPod's S3 API secret (env `PODTUI_RUNPOD_S3_SECRET`, `rps_…`)."""

    hf_token: str | None = Field(None, validation_alias=AliasChoices("HF_TOKEN", "PODTUI_HF_TOKEN", "hf_token"),
                                 repr=False)
    """A Hub token (env `HF_TOKEN`) for private or gated hf:// sources; a pod gets it only in its start script,
    served over its ingest token, never in the pod's create request."""

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file_path()))

    # -- derived values -------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        """The SQLite file."""
        return self.data_dir / "podtui.db"

    @property
    def log_file(self) -> Path:
        """podtui's log file (the TUI never logs to the terminal)."""
        return self.data_dir / "podtui.log"

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
        if self.provider:
            return self.provider
        return "runpod" if self.runpod_api_key else "local"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a broken config file raises ValueError with a readable message."""
    try:
        return Settings(**overrides)
    except Exception as exc:  # pydantic ValidationError or a TOML syntax error
        raise ValueError(f"podtui settings are invalid: {exc}") from exc


def ensure_admin_token(settings: Settings) -> str:
    """Return the admin token, creating it (mode 0600) in the data dir on first start."""
    return settings.admin_token or ensure_secret(settings, ADMIN_TOKEN_FILE)


def read_admin_token(settings: Settings) -> str | None:
    """The admin token a local client uses: the setting, else the data dir's file, else None."""
    if settings.admin_token:
        return settings.admin_token
    try:
        return (settings.data_dir / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


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
