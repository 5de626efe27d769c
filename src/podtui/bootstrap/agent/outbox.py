"""What waits to be sent: metric points and log lines in order, bounded in memory, spilling to a file."""

from __future__ import annotations

import collections
import json
import math
import threading

MAX_BATCH_ITEMS = 5000
MAX_BATCH_BYTES = 900 * 1024
MEMORY_ITEMS = 20000
SPILL_CHUNK = 5000


def json_value(value: float) -> object:
    """JSON has no NaN or infinity: send them as the strings the control plane reads."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# -- the outbox: ordered, bounded in memory, spilling to a file ---------------------------------------

class Outbox:
    """Metric points and log lines waiting to be sent, oldest first. Past MEMORY_ITEMS in memory, the oldest
    go to a spill file (JSON lines), which is always sent before what is in memory."""

    def __init__(self, spill_path: str) -> None:
        self.lock = threading.Lock()
        self.memory: collections.deque = collections.deque()
        self.spill_path = spill_path
        self.spill_offset = 0
        self.spilled = 0
        self.left_memory = 0  # items ever removed from the front of memory (sent, or spilled)

    def add(self, kind: str, item: dict) -> None:
        with self.lock:
            self.memory.append((kind, item))
            if len(self.memory) > MEMORY_ITEMS:
                with open(self.spill_path, "a", encoding="utf-8") as f:
                    for _ in range(SPILL_CHUNK):
                        f.write(json.dumps(self.memory.popleft()) + "\n")
                self.spilled += SPILL_CHUNK
                self.left_memory += SPILL_CHUNK

    def __len__(self) -> int:
        with self.lock:
            return len(self.memory) + self.spilled

    def peek(self) -> tuple:
        """The next batch (within the control plane's limits) and a token to commit it with."""
        with self.lock:
            items: list = []
            size = 0
            offset = self.spill_offset
            if self.spilled:
                with open(self.spill_path, encoding="utf-8") as f:
                    f.seek(offset)
                    while len(items) < MAX_BATCH_ITEMS and size < MAX_BATCH_BYTES:
                        raw = f.readline()
                        if not raw:
                            break
                        kind, item = json.loads(raw)
                        items.append((kind, item))
                        size += len(raw)
                        offset = f.tell()
                return items, ("spill", offset, len(items))
            for kind, item in self.memory:
                if len(items) >= MAX_BATCH_ITEMS or size >= MAX_BATCH_BYTES:
                    break
                items.append((kind, item))
                size += len(item.get("text", "")) + 64
            return items, ("memory", self.left_memory, len(items))

    def commit(self, token: tuple) -> None:
        where, offset, count = token
        with self.lock:
            if where == "spill":
                self.spill_offset = offset
                self.spilled -= count
                if self.spilled <= 0:
                    self.spilled, self.spill_offset = 0, 0
                    open(self.spill_path, "w").close()
            else:
                # Items of the batch spilled while it was in flight are in the spill file now (sent again
                # from there; the control plane de-duplicates): remove only what is still in memory.
                gone = self.left_memory - offset
                for _ in range(max(0, count - gone)):
                    self.memory.popleft()
                self.left_memory += max(0, count - gone)
