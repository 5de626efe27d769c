"""The control plane: an aiohttp app serving the admin API, the pod API and dataset downloads."""
