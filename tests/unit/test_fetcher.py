"""The pod's fetcher (bootstrap/fetch.py) on its own: resuming bytes an earlier pod left, and refusing a file whose
sha256 is not the registered one (against a real server with Range on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import hashlib
import os

from podtui.bootstrap import fetch
from tests.fakes.file_server import FileServer, ServedFile


class Bar:
    def __init__(self):
        self.done = 0

    def add(self, n):
        self.done += n


async def test_resumes_a_partial_file_and_checks_the_whole_sha256(tmp_path):
    server = FileServer()
    await server.start()
    try:
        data = os.urandom(3_000_000)
        server.files["f.bin"] = ServedFile(data)
        entry = {"path": "f.bin", "url": f"{server.url}/f.bin", "size": len(data), "etag": server.files["f.bin"].etag,
                 "sha256": hashlib.sha256(data).hexdigest()}
        dest = tmp_path / "f.bin"
        dest.write_bytes(data[:1_000_000])  # what an earlier pod fetched before it was stopped
        bar = Bar()
        sha = await asyncio.to_thread(fetch.fetch_file, entry, str(dest), bar)
        assert sha == entry["sha256"] and dest.read_bytes() == data and bar.done == len(data)
        assert [r for _, _, r in server.requests] == ["bytes=1000000-"] and server.bytes_sent == 2_000_000

        dest.write_bytes(b"\0" * 1_000_000)  # a bad prefix: the sha256 catches it, the file is dropped
        try:
            await asyncio.to_thread(fetch.fetch_file, entry, str(dest), Bar())
        except fetch.FetchError as exc:
            assert "is not the one registered" in str(exc)
        else:
            raise AssertionError("a file with the wrong bytes was accepted")
        assert not dest.exists()
    finally:
        await server.stop()


async def test_a_body_cut_short_is_resumed_from_the_last_byte_written(tmp_path, capsys):
    server = FileServer()
    await server.start()
    try:
        data = os.urandom(5 * fetch.BLOCK + 1234)
        server.files["f.bin"] = ServedFile(data)
        server.cut_after = 2 * fetch.BLOCK + 77  # mid-block: the bytes of the block read so far are kept too
        entry = {"path": "f.bin", "url": f"{server.url}/f.bin", "size": len(data), "etag": server.files["f.bin"].etag}
        dest = tmp_path / "f.bin"
        sha = await asyncio.to_thread(fetch.fetch_file, entry, str(dest), Bar())
        assert sha == hashlib.sha256(data).hexdigest() and dest.read_bytes() == data
        assert [r for _, _, r in server.requests] == [None, f"bytes={2 * fetch.BLOCK + 77}-"]
        assert server.bytes_sent == len(data)  # no byte twice
        assert f"broke off at {2 * fetch.BLOCK + 77} of {len(data)} bytes; resuming" in capsys.readouterr().out
    finally:
        await server.stop()
