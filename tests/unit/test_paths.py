"""Path containment for dataset files."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podtui.server.datasets import DatasetError, is_inside, safe_relative_path


@pytest.mark.parametrize("bad", [
    "../etc/passwd", "a/../../b", "/etc/passwd", "a\\..\\b", "a\x00b", "..%2Fetc", "%2e%2e/x", "a/%2F/b",
    "", "a//b", "./a", "a/.", "C:/x", "a/%5cb", "%00",
])
def test_unsafe_paths_are_refused(bad):
    with pytest.raises(DatasetError):
        safe_relative_path(bad)


@pytest.mark.parametrize("good", ["a.csv", "train/part-0001.parquet", "x y/z.txt", "..a/b..", "a/...b"])
def test_plain_relative_paths_pass(good):
    assert safe_relative_path(good) == good


@given(st.text(alphabet=st.sampled_from(list("ab./\\%2fFe0\x00")), max_size=12))
def test_accepted_paths_never_climb_out(path):
    try:
        safe_relative_path(path)
    except DatasetError:
        return
    root = "/srv/data"
    assert os.path.normpath(os.path.join(root, path)).startswith(root + "/")


def test_symlink_escape_detected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    (root / "link").symlink_to(outside)
    assert not is_inside(str(root), str(root / "link"))
    (root / "ok.txt").write_text("x")
    assert is_inside(str(root), str(root / "ok.txt"))
