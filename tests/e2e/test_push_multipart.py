"""`datasets push` of a file larger than a part goes up in multipart parts, 10 at a time, and lands whole."""

from __future__ import annotations

import hashlib
import json
import os

from podtui.server.push import PART_BYTES

from .test_runpod import fake, plane_for, planes  # noqa: F401  (fixtures)


async def test_a_large_file_goes_up_in_parts_and_lands_whole(tmp_path, fake, planes):  # noqa: F811
    import boto3
    from moto.server import ThreadedMotoServer

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    try:
        host, port = s3.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        plane = await plane_for(tmp_path, fake, planes, runpod_s3_url=endpoint, runpod_s3_access_key="user_test",
                                runpod_s3_secret="rps_test")
        made = (await plane.http.post("/api/v1/volumes", json={"name": "vol", "provider": "runpod", "size_gb": 20,
                                                               "data_center": "US-KS-2"})).json()
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="user_test",
                              aws_secret_access_key="rps_test", region_name="us-east-1")
        client.create_bucket(Bucket=made["id"])
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
    finally:
        s3.stop()
