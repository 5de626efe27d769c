"""RunPod network volumes over REST v2 (`/v2/network-volumes`): storage that outlives pods, mounted at create."""

from __future__ import annotations

from typing import Any

from .base import ProviderError
from .runpod_api import RunPodApi


class RunPodVolumes:
    """The account's network volumes, and the GPU stock of a volume's data center."""

    def __init__(self, api: RunPodApi) -> None:
        self.api = api

    async def list(self) -> list[dict[str, Any]]:
        """The account's network volumes (`NetworkVolume`: id, name, size, dataCenter, type)."""
        try:
            found = await self.api.json("GET", "/v2/network-volumes")
        except ProviderError as exc:
            raise ProviderError(f"RunPod did not list the network volumes: {exc}") from None
        volumes = found.get("networkVolumes") if isinstance(found, dict) else None
        return [v for v in volumes or [] if isinstance(v, dict)]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a network volume (`CreateNetworkVolumeRequest`); it bills until deleted."""
        created = await self.api.json("POST", "/v2/network-volumes", json=body)
        if not isinstance(created, dict) or "id" not in created:
            raise ProviderError("RunPod's answer to creating the volume had no id")
        return created

    async def gpus_in_data_center(self, data_center: str) -> dict[str, str]:
        """GPU type id -> availability (HIGH, MEDIUM, LOW, NONE) in one data center (a volume's)."""
        found = await self.api.json("GET", f"/v2/catalog/datacenters/{data_center}",
                                    params={"include": "GPU_AVAILABILITY"})
        gpus = found.get("gpuAvailability") if isinstance(found, dict) else None
        return {str(g["id"]): str(g.get("availability") or "NONE") for g in gpus or []
                if isinstance(g, dict) and "id" in g}

    async def delete(self, volume_id: str) -> None:
        """Delete a network volume and everything on it."""
        await self.api.json("DELETE", f"/v2/network-volumes/{volume_id}")
