"""Which names may be outputs (one rule, in the agent package, used by the agent, the control plane and the client),
and the agent's scan of an outputs folder: symlinks out of it are refused and never followed."""

from __future__ import annotations

import os
from pathlib import Path

import podtui.client
import podtui.server.outputs
from podtui.bootstrap.agent import outputs as agent
from podtui.bootstrap.agent.output_names import output_name_problem


def test_plain_relative_names_pass_and_escapes_do_not():
    for good in ("model.safetensors", "checkpoints/step-100/adapter.bin", "a b/ü.txt", "x" * 255):
        assert output_name_problem(good) is None and agent.output_name_problem(good) is None
    for bad in ("", "../x", "a/../../b", "/etc/passwd", "a//b", "./a", "a/.", "a\x00b", "a\nb", "x" * 256,
                "/".join(["d"] * 600), ".partial/x", "\udcff.bin"):
        assert output_name_problem(bad) is not None and agent.output_name_problem(bad) is not None, bad


def test_the_agent_and_the_control_plane_agree():
    """They check names with one rule, the agent's (the control plane and the client import it; no copy to drift)."""
    assert podtui.server.outputs.output_name_problem is output_name_problem
    assert podtui.client.output_name_problem is output_name_problem
    assert agent.output_name_problem is output_name_problem


def test_scan_refuses_links_out_and_sends_links_in(tmp_path: Path):
    root = tmp_path / "outputs"
    (root / "sub").mkdir(parents=True)
    (root / "model.bin").write_bytes(b"weights")
    (root / "sub" / "ckpt.bin").write_bytes(b"ckpt")
    secret = tmp_path / "secret.txt"
    secret.write_text("not an output")
    os.symlink(secret, root / "escape")
    os.symlink("../../secret.txt", root / "sub" / "up")
    os.symlink("model.bin", root / "latest")
    os.symlink("sub", root / "sub-link")
    os.symlink(tmp_path, root / "dir-out")
    os.mkfifo(root / "pipe")
    files, refused = agent.scan_outputs(str(root))
    assert [f[0] for f in files] == ["latest", "model.bin", "sub/ckpt.bin"]
    assert dict(files and [(f[0], f[2]) for f in files])["latest"] == len(b"weights")
    assert {name for name, _ in refused} == {"escape", "sub/up", "dir-out"}
    assert all("outside" in why for _, why in refused)
