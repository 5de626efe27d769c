"""`podtui doctor` reports configuration problems: a broken config.toml (with its path and line) fails, a
misspelt setting warns (doctor said the settings were fine through all of it)."""

from tests.e2e.test_doctor import doctor


async def test_doctor_fails_on_a_broken_config_naming_its_line(tmp_path):
    (tmp_path / "c.toml").write_text('log_level = "INFO"\nsupervisor_interval_s = -1\n')
    code, checks = await doctor(tmp_path)
    assert code == 1
    assert checks["settings"]["status"] == "fail"
    assert f"{tmp_path / 'c.toml'} line 2: supervisor_interval_s:" in checks["settings"]["message"]


async def test_doctor_warns_of_a_misspelt_setting(tmp_path):
    (tmp_path / "c.toml").write_text('stop_on_nans = false\n')
    _code, checks = await doctor(tmp_path)
    assert checks["settings"]["status"] == "ok"
    assert checks["settings file"]["status"] == "warn"
    assert "'stop_on_nans' is no podtui setting (did you mean 'stop_on_nan'?)" in checks["settings file"]["message"]
