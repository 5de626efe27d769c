"""Where settings come from, read with the standard library: the environment (`PODTUI_<NAME>`, and the names other
tools use for a few: `RUNPOD_API_KEY`, `HF_ENDPOINT`, `HF_TOKEN`) over the TOML file `config.toml` in the user
config dir (`PODTUI_CONFIG_FILE` points at another).

`config.Settings` validates what this reads (pydantic). The dashboard's first frame needs only a few values, which
`StartSettings` takes from the same sources without pydantic: it loads after the first frame (docs/architecture.md,
"The TUI's start"), and a setting that is invalid is said then, before the dashboard goes on.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

ENV_PREFIX = "PODTUI_"
STORE_FILE = "podtui.db"
"""The SQLite store's file in the data dir."""
LOG_FILE = "podtui.log"
"""podtui's log file in the data dir."""

ENV_NAMES: dict[str, tuple[str, ...]] = {
    "runpod_api_key": ("RUNPOD_API_KEY", "PODTUI_RUNPOD_API_KEY"),
    "hf_endpoint": ("HF_ENDPOINT", "PODTUI_HF_ENDPOINT"),
    "hf_token": ("HF_TOKEN", "PODTUI_HF_TOKEN"),
}
"""The settings read from other tools' environment variables too, the first one set winning; every other setting
is `PODTUI_<NAME>` alone."""


def env_names(name: str) -> tuple[str, ...]:
    """The environment variables a setting is read from, in the order they win."""
    return ENV_NAMES.get(name, (ENV_PREFIX + name.upper(),))


def default_config_file() -> Path:
    """The TOML file read when `PODTUI_CONFIG_FILE` is not set."""
    return Path(platformdirs.user_config_dir("podtui")) / "config.toml"


def config_file_path() -> Path:
    """The TOML file settings are read from: `PODTUI_CONFIG_FILE`, else the default one (either may not exist)."""
    return Path(os.environ.get("PODTUI_CONFIG_FILE") or default_config_file())


def default_data_dir() -> Path:
    """Where the store, the admin token and local pods live by default."""
    return Path(platformdirs.user_data_dir("podtui"))


def env_values() -> dict[str, str]:
    """The settings set in the environment, by setting name, as the strings given (names matched ignoring case)."""
    upper = {key.upper(): value for key, value in os.environ.items()}
    values = {key[len(ENV_PREFIX):].lower(): value for key, value in upper.items()
              if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX)}
    for name, names in ENV_NAMES.items():
        values.pop(name, None)
        given = next((upper[n] for n in names if n in upper), None)
        if given is not None:
            values[name] = given
    return values


def file_values(path: Path) -> dict[str, Any]:
    """The settings set in the TOML file (none when it does not exist). Raises tomllib.TOMLDecodeError, OSError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    values = tomllib.loads(text)
    for name, names in ENV_NAMES.items():  # `HF_TOKEN = …` in the file is the setting hf_token too
        for other in names:
            if other in values and name not in values:
                values[name] = values.pop(other)
    return values


def default_provider(provider: str | None, runpod_api_key: str | None) -> str:
    """The provider used when a launch names none: the setting, else `runpod` when a RunPod key is set."""
    return provider or ("runpod" if runpod_api_key else "local")


@dataclass(frozen=True)
class StartSettings:
    """What the dashboard's first frame needs (the data dir whose store it reads, the keymap, the log, the default
    provider), read from the settings' sources without validating them: a value of the wrong kind is left at its
    default here, and `config.load_settings` says what is wrong once it runs, right after the first frame."""

    data_dir: Path
    keymap: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    default_provider: str = "local"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """What the command line set (they win over the environment and the file when the settings load)."""

    @classmethod
    def read(cls, **overrides: Any) -> StartSettings:
        try:
            values: dict[str, Any] = file_values(config_file_path())
        except (OSError, ValueError):  # said by load_settings, after the first frame
            values = {}
        values.update(env_values())
        values.update(overrides)
        keymap = values.get("keymap")
        if isinstance(keymap, str):
            try:
                keymap = json.loads(keymap)
            except ValueError:
                keymap = None
        if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
            keymap = {}
        data_dir = values.get("data_dir")
        level = values.get("log_level")
        provider, key = values.get("provider"), values.get("runpod_api_key")
        return cls(data_dir=Path(data_dir) if isinstance(data_dir, str | Path) and str(data_dir) else
                   default_data_dir(), keymap={str(k): v for k, v in keymap.items()},
                   log_level=level if isinstance(level, str) else "INFO",
                   default_provider=default_provider(provider if isinstance(provider, str) else None,
                                                     key if isinstance(key, str) else None),
                   overrides=dict(overrides))

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE
