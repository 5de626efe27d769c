"""The core runs without the UI: models, store, server, providers, bootstrap and client never import textual,
and the agent imports only the standard library."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = ["podtui.models", "podtui.store", "podtui.server.app", "podtui.server.api", "podtui.providers.local",
        "podtui.bootstrap.script", "podtui.client", "podtui.config", "podtui.tokens", "podtui.actions",
        "podtui.stored_runs", "podtui.wording"]


def test_core_imports_without_textual():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
            + "assert not bad, bad\nassert 'runpod' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_agent_imports_only_the_standard_library():
    import podtui.bootstrap.agent as agent

    names = set()
    modules = sorted(Path(agent.__file__).parent.glob("*.py"))
    assert len(modules) > 5, modules
    for module in modules:
        tree = ast.parse(module.read_text(), feature_version=(3, 8))  # pods' Pythons are 3.8 and later
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1, f"{module.name} imports from outside the agent package"
    names.discard("__future__")
    assert names <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)
