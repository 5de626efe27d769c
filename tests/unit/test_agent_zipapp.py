"""The agent ships to pods as one zipapp: the same bytes for the same source (whatever the files' times and modes),
its modules without comments and docstrings but the same code on the same lines, small enough for a pull-mode
pod's env, and it runs on the machine's own python3 as a pod runs it."""

from __future__ import annotations

import ast
import base64
import io
import os
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from podtui.bootstrap.script import agent_env_value, agent_source
from podtui.bootstrap.zipapp import AGENT_DIR, build_zipapp, shipped_source
from tests.fakes.report_sink import ReportSink

AGENT_ENV_BUDGET = 40_000  # as in tests/e2e/test_runpod.py


def test_two_builds_are_the_same_bytes_whatever_the_files_times_and_modes(tmp_path: Path):
    copy = tmp_path / "agent"
    shutil.copytree(AGENT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for i, path in enumerate(sorted(copy.glob("*.py"))):
        os.utime(path, (1_000_000_000 + i * 7919, 1_000_000_000 + i * 7919))
        path.chmod(0o600 if i % 2 else 0o755)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "links.cpython-311.pyc").write_bytes(b"stale")
    assert build_zipapp() == build_zipapp() == build_zipapp(copy) == agent_source()
    (copy / "links.py").write_text((copy / "links.py").read_text() + "\nCHANGED = 1\n")
    assert build_zipapp(copy) != build_zipapp()


def test_entries_are_sorted_with_fixed_times_and_modes():
    archive = zipfile.ZipFile(io.BytesIO(build_zipapp()))
    names = archive.namelist()
    assert names == sorted(names) and names[0] == "__main__.py"
    assert {f"podtui_agent/{p.name}" for p in AGENT_DIR.glob("*.py")} == set(names[1:])
    assert {(i.date_time, i.external_attr >> 16) for i in archive.infolist()} == {((1980, 1, 1, 0, 0, 0), 0o100644)}


@pytest.mark.parametrize("module", sorted(p.name for p in AGENT_DIR.glob("*.py")))
def test_shipped_modules_are_the_same_code_on_the_same_lines(module: str):
    source = (AGENT_DIR / module).read_text()
    shipped = shipped_source(source)
    assert shipped.count("\n") == source.count("\n")
    assert not [line for line in shipped.splitlines() if line.lstrip().startswith("#")]

    def code(text: str) -> str:
        tree = ast.parse(text, feature_version=(3, 8))
        for node in ast.walk(tree):  # a statement that is a string alone is a docstring: shipped as ""
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value,
                                                                                                  str):
                node.value.value = ""
        return ast.dump(tree)

    assert code(shipped) == code(source)
    original = {n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert original == {n.lineno for n in ast.walk(ast.parse(shipped)) if isinstance(n, (ast.FunctionDef,
                                                                                          ast.ClassDef))}


def test_comments_and_docstrings_go_and_strings_in_code_stay():
    source = 'def f():\n    """Doc\n    more."""\n    x = "# not a comment"  # a comment\n    return x\n'
    assert shipped_source(source) == 'def f():\n    ""\n\n    x = "# not a comment"\n    return x\n'


def test_the_pull_env_value_is_the_zipapp_within_its_budget():
    value = agent_env_value()
    assert len(value) < AGENT_ENV_BUDGET
    assert zlib.decompress(base64.b64decode(value)) == agent_source()


def test_it_runs_on_the_machines_python3(tmp_path: Path):
    python3 = shutil.which("python3", path="/usr/bin:/bin") or shutil.which("python3")
    assert python3, "no python3 on this machine"
    app = tmp_path / "agent.pyz"
    app.write_bytes(agent_source())
    usage = subprocess.run([python3, str(app)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: agent.pyz run -- COMMAND" in usage.stderr
    plane = ReportSink()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PODTUI_URL": plane.url, "PODTUI_RUN_ID": "r1",
           "PODTUI_TOKEN": "t", "PODTUI_HOME": str(tmp_path / "home"), "NO_PROXY": "127.0.0.1"}
    command = "echo step=1 loss=0.5; echo step=2 loss=0.25"
    result = subprocess.run([python3, str(app), "run", "--", "sh", "-c", command], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert plane.metrics == {("loss", 1): 0.5, ("loss", 2): 0.25}
    assert [t for t in plane.lines.values() if t.startswith("step=")] == ["step=1 loss=0.5", "step=2 loss=0.25"]
    assert plane.statuses == ["succeeded"]
