"""Settings in groups (server, RunPod, pod limits, TUI), read by the names users have always set."""

import pytest

from podtui.config import SETTING_GROUPS, Settings, load_settings


def test_every_setting_is_in_one_group():
    grouped = [name for group in SETTING_GROUPS.values() for name in group.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields) and len(grouped) == len(set(grouped))
    assert list(SETTING_GROUPS) == ["server", "RunPod", "pod limits", "TUI", "dataset sources"]
    assert "keymap" in SETTING_GROUPS["TUI"].model_fields and "port" in SETTING_GROUPS["server"].model_fields


def test_the_names_users_set_are_unchanged(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('port = 9001\nrunpod_api_url = "http://127.0.0.1:9/v2"\nstall_timeout_s = 60\n'
                      '[keymap]\n"run.new" = "m"\n')
    for name in list(__import__("os").environ):
        if name.startswith("PODTUI_") or name == "RUNPOD_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(config))
    monkeypatch.setenv("PODTUI_HOST", "0.0.0.0")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa-test")
    monkeypatch.setenv("PODTUI_POD_UNREACHABLE_LIMIT_S", "600")
    monkeypatch.setenv("PODTUI_STOP_ON_NAN", "false")
    settings = load_settings()
    assert (settings.port, settings.host, settings.runpod_api_key) == (9001, "0.0.0.0", "rpa-test")
    assert settings.runpod_api_url == "http://127.0.0.1:9/v2" and settings.stall_timeout_s == 60
    assert settings.pod_unreachable_limit_s == 600 and settings.stop_on_nan is False
    assert settings.keymap == {"run.new": "m"} and settings.default_provider == "runpod"
    monkeypatch.setenv("PODTUI_PORT", "9002")  # the environment wins over the file, as before
    assert load_settings().port == 9002
    monkeypatch.setenv("PODTUI_PUBLIC_URL", "ftp://pods.example.com")
    with pytest.raises(ValueError, match="public URL must be an http"):
        load_settings()


def test_the_sources_read_without_pydantic_agree_with_the_settings(tmp_path, monkeypatch):
    """The first frame reads the data dir, keymap and provider with the standard library (settings_sources.py);
    Settings validates the same sources after it: both see the same values, with the same precedence."""
    from podtui.settings_sources import StartSettings

    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-file"}"\nprovider = "local"\nHF_TOKEN = "hf-from-file"\n'
                      '[keymap]\n"run.new" = "m"\n')
    for name in list(__import__("os").environ):
        if name.startswith(("PODTUI_", "HF_")) or name == "RUNPOD_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(config))
    monkeypatch.setenv("podtui_data_dir", str(tmp_path / "from-env"))  # names match ignoring case, as before
    monkeypatch.setenv("PODTUI_RUNPOD_API_KEY", "rpa-second-name")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa-first-name")  # RunPod's own name wins over podtui's
    monkeypatch.setenv("PODTUI_DATASET_ROOTS", f'["{tmp_path}"]')  # a list: JSON, as before
    start, settings = StartSettings.read(), load_settings()
    assert start.data_dir == settings.data_dir == tmp_path / "from-env"
    assert start.keymap == settings.keymap == {"run.new": "m"}
    assert start.default_provider == settings.default_provider == "local"
    assert settings.runpod_api_key == "rpa-first-name" and settings.hf_token == "hf-from-file"
    assert settings.dataset_roots == [tmp_path]
    assert Settings(data_dir=tmp_path / "given").data_dir == tmp_path / "given"  # keywords win
    assert StartSettings.read(data_dir=tmp_path / "given").data_dir == tmp_path / "given"
    monkeypatch.setenv("PODTUI_KEYMAP", "not json")
    with pytest.raises(ValueError, match="PODTUI_KEYMAP must be JSON"):
        load_settings()
    assert StartSettings.read().keymap == {}  # the first frame goes on; the settings say what is wrong right after
