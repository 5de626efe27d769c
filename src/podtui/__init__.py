"""podtui: a terminal dashboard for training models on rented GPU pods."""

import gc

__version__ = "0.1.0"

# podtui's processes (the TUI, `podtui serve`) build a few hundred thousand long-lived objects as they start, then
# allocate many short-lived ones per request. With Python's default thresholds (700, 10, 10) full collections ran
# over and over during the start (30-60 ms of the TUI's first frame), and under pod reports the collector took a
# fifth of the control plane's CPU (bench/ingest.py). Young objects are collected every 50,000 allocations instead.
gc.set_threshold(50_000, 20, 20)
