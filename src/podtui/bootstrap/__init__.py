"""What runs on a pod: the start script (rendered per run) and the pod agent (standard library only)."""
