"""Pod providers: where a run's pod comes from (local processes, or RunPod)."""
