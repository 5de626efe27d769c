"""The agent ships to pods as one zipapp: the same bytes for the same source (whatever the files' times and modes),
its modules without comments and docstrings but the same code on the same lines, small enough for a pull-mode
pod's env, and it runs on the machine's own python3 as a pod runs it."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
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


PYTHONS = ["python3", "python3.8"]  # the machine's own, and the oldest a pod may have when this machine has it


def interpreter(name: str) -> str:
    """The interpreter's own path (not a version manager's shim, which the pod's minimal env would not satisfy)."""
    found = shutil.which(name, path="/usr/bin:/bin") or shutil.which(name)
    ask = subprocess.run([found or name, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                         timeout=60) if found else None
    if ask is None or ask.returncode != 0:
        if name == "python3":
            pytest.fail("no python3 on this machine")
        pytest.skip(f"no {name} on this machine")
    return ask.stdout.strip()


@pytest.mark.parametrize("name", PYTHONS)
def test_it_runs_on_the_machines_python3(tmp_path: Path, name: str):
    python3 = interpreter(name)
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


@pytest.mark.parametrize("name", PYTHONS)
def test_pull_mode_serves_the_pods_port(tmp_path: Path, name: str):
    python3 = interpreter(name)
    app = tmp_path / "agent.pyz"
    app.write_bytes(zlib.decompress(base64.b64decode(agent_env_value())))  # as the boot snippet writes it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PODTUI_POD_TOKEN": "pod-token", "NO_PROXY": "127.0.0.1",
           "PODTUI_POD_PORT": str(port), "PODTUI_POD_BIND": "127.0.0.1", "PODTUI_HOME": str(tmp_path / "home")}
    pod = subprocess.Popen([python3, str(app), "pull"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/state",
                                         headers={"Authorization": "Bearer pod-token"})
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    state = json.loads(answer.read())
                break
            except OSError:
                assert pod.poll() is None and time.monotonic() < deadline, pod.stderr and pod.stderr.read()
                time.sleep(0.1)
        assert state == {"started": False, "inputs": {}}
    finally:
        pod.send_signal(signal.SIGTERM)
        assert pod.wait(60) == 143
