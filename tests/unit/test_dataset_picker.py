"""The launch form's dataset picker says where a dataset comes from, its size and where it is cached."""

from podtui.models import Dataset
from podtui.screens.launch import dataset_label, preview


def make(**fields):
    values = {"id": "i" * 64, "name": "tiny", "path": "hf://datasets/org/tiny", "kind": "hf", "size_bytes": 3 * 1024**3,
              "file_count": 12, "sha256": "s" * 64, "created_at": 0.0, "source": "hf://datasets/org/tiny",
              "revision": "abcdef0123456789" * 2 + "abcdefgh"}
    values.update(fields)
    return Dataset(**values)


def test_label_names_kind_size_and_volumes():
    assert dataset_label(make()) == "tiny  (Hugging Face, 3.0 GiB)"
    assert dataset_label(make(kind="dir", cached_on=["vol-a", "cache (local)"])) == \
        "tiny  (local folder, 3.0 GiB, cached on vol-a, cache (local))"


def test_remote_preview_says_the_pod_fetches_it():
    said = preview(make())
    assert "12 file(s) from hf://datasets/org/tiny at abcdef012345" in said and "never through this machine" in said
