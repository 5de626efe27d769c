"""digest.sha256_of: a file's first bytes' SHA-256, resumable (the outputs' partials go on from it)."""

import hashlib
import os

import pytest

from podtui.digest import sha256_file, sha256_of

BLOCK = 1 << 20


@pytest.mark.parametrize("limit", [0, 1, BLOCK - 1, BLOCK, BLOCK + 5, 3 * BLOCK + 17, 3 * BLOCK + 100, None])
def test_the_first_bytes_and_the_whole_file(tmp_path, limit):
    data = os.urandom(3 * BLOCK + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_of(path, limit).hexdigest() == hashlib.sha256(data[:limit]).hexdigest()
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
