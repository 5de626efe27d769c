"""`datasets push` of a file larger than a part goes up in multipart parts, 10 at a time, and lands whole."""

from __future__ import annotations

import hashlib
import json
import os

from podtui.server.push import PART_BYTES

from .test_runpod import fake, planes  # noqa: F401  (fixtures)
from .test_runpod_volumes import s3_volume  # noqa: F401  (fixture)


async def test_a_large_file_goes_up_in_parts_and_lands_whole(tmp_path, s3_volume):  # noqa: F811

    made = await s3_volume.volume("vol")
    plane, client = s3_volume.plane, s3_volume.client
    data = os.urandom(2 * PART_BYTES + 12345)  # three parts
    (tmp_path / "big.bin").write_bytes(data)
    r = await plane.http.post("/api/v1/datasets", json={"path": str(tmp_path / "big.bin"), "name": "big"})
    assert r.status_code == 201, r.text
    async with plane.http.stream("POST", "/api/v1/datasets/big/push", json={"volume": "vol"}) as answer:
        lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
    result = lines[-1]["result"]
    assert result["uploaded_bytes"] == len(data), lines
    key = f"podtui/datasets/{result['key']}/big.bin"
    head = client.head_object(Bucket=made["id"], Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get_object(Bucket=made["id"], Key=key)["Body"].read() == data

