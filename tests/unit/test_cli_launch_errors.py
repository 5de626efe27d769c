"""A launch's bad options are refused before any control plane is asked, named as the user typed them."""

import pytest
from click.testing import CliRunner

from podtui.cli import main


@pytest.mark.parametrize(("args", "said"), [
    (["--budget", "-1"], "--budget: Input should be greater than or equal to 0"),
    (["--gpu-count", "0"], "--gpu-count: Input should be greater than or equal to 1"),
    (["--outputs", "/abs"], "--outputs: outputs must be a folder inside the workdir"),
    (["--outputs", "../x"], "--outputs: outputs must be a folder inside the workdir"),
    (["--max-runtime", "abc"], "--max-runtime: 'abc' is not a duration"),
])
def test_bad_launch_options_name_the_option(tmp_path, monkeypatch, args, said):
    monkeypatch.setenv("PODTUI_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PODTUI_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["launch", "--dataset", "demo", "--gpu", "local", *args])
    assert result.exit_code == 2, result.output
    assert said in result.output and "validation error" not in result.output and "pydantic" not in result.output
