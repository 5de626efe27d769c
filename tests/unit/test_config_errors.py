"""A broken config.toml is reported with its path and the line (or the variable) that is wrong; a misspelt
setting is named (it was reported without its path, and a misspelt key silently ignored)."""

import pytest
from click.testing import CliRunner

from podtui.cli import main
from podtui.config import load_settings, unknown_settings


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(path))
    monkeypatch.delenv("PODTUI_PORT", raising=False)
    return path


def test_a_toml_syntax_error_names_the_file_and_line(config):
    config.write_text('log_level = "INFO"\npublic_url = "https://x\n')
    with pytest.raises(ValueError) as caught:
        load_settings()
    assert f"{config} is not valid TOML" in str(caught.value) and "line 2" in str(caught.value)


def test_a_bad_value_names_the_file_and_its_line(config):
    config.write_text('log_level = "INFO"\n\nport = 99999\n')
    with pytest.raises(ValueError) as caught:
        load_settings()
    assert f"{config} line 3: port: Input should be less than or equal to 65535" in str(caught.value)


def test_a_bad_variable_names_the_variable_not_the_file(config, monkeypatch):
    monkeypatch.setenv("PODTUI_PORT", "abc")
    with pytest.raises(ValueError) as caught:
        load_settings()
    assert "PODTUI_PORT (environment): port:" in str(caught.value)


def test_the_cli_says_it_in_one_readable_error(config):
    config.write_text("port = 99999\n")
    result = CliRunner().invoke(main, ["runs"])
    assert result.exit_code == 1
    assert f"{config} line 1: port:" in result.output and "Traceback" not in result.output


def test_a_misspelt_setting_is_named_with_a_suggestion(config):
    config.write_text('log_level = "INFO"\nprot = 9000\n')
    assert unknown_settings(config) == [
        f"{config} line 2: 'prot' is no podtui setting (did you mean 'port'?); it is ignored"]
