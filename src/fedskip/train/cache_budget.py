"""The activation cache's size: what one entry takes, and how much of it may stay in memory.

An entry holds the hidden states entering the lowest trained block for every token of a
client's examples (:mod:`fedskip.train.prefix_cache`), so its size follows the hidden size:

    bytes = tokens x hidden x bytes per value (4 in fp32, 2 in bf16)

=============================  ======  =================  ==========================================
model                          hidden  bytes per token    1,000 windows of 256 tokens
=============================  ======  =================  ==========================================
MiniLM (all-MiniLM-L6-v2)      384     1,536 (fp32)       0.39 GB
LLaMA 3.2-1B                   2,048   8,192 (fp32)       2.10 GB (1.05 GB in bf16)
=============================  ======  =================  ==========================================

(GB = 10^9 bytes.) At 1 B scale a single site's entry can therefore outgrow the memory left
beside a 5 GB model, its gradients and optimizer state. The in-memory budget of a process is
``min(activation-cache-mb, RAM_SHARE x the memory available when the entry is filled)``
(:func:`memory_budget_bytes`): on this project's 24 GB machine with LLaMA 3.2-1B loaded in fp32
(about 19 GB available) that is the configured 2,048 MiB; on a 16 GB site (about 11 GB available)
2.75 GB, so still 2,048 MiB; with 4 GB available, 1.0 GB. An entry whose estimate
(:func:`entry_bytes`) exceeds the budget is never built in memory: its rows are written straight
into a memory-mapped file in the run's owner-only ``OUT/activation-cache/`` folder (the
estimate, which is also the file's size, is logged), and training reads them back from there.
When the disk there has less free space than the estimate, the cache is skipped for that call
(the whole model runs, with a warning) rather than filling the disk.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MIB = 2**20
RAM_SHARE = 0.25
"""Share of the memory available when an entry is filled that the cache may keep in memory (the
rest is for the model, its gradients and optimizer state, batches and the other processes)."""
CGROUP_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current"))


def entry_bytes(features: Sequence[Mapping[str, Any]], hidden: int, itemsize: int = 4) -> int:
    """Bytes of a cache entry over ``features``: tokens x ``hidden`` x ``itemsize``."""
    tokens = sum(len(f["input_ids"]) for f in features)
    return tokens * hidden * itemsize


def available_memory_bytes() -> int:
    """Memory available to this process now: the system's available memory, or less when a
    cgroup (v2) limit leaves less."""
    import psutil

    available = int(psutil.virtual_memory().available)
    with contextlib.suppress(OSError, ValueError):
        limit, used = (int(p.read_text().strip()) for p in CGROUP_FILES)  # "max" → ValueError
        available = min(available, max(0, limit - used))
    return available


def memory_budget_bytes(configured_mb: int, available: int) -> int:
    """The in-memory budget: ``configured_mb`` MiB (``activation-cache-mb``), capped at
    :data:`RAM_SHARE` of ``available`` bytes."""
    return min(configured_mb * MIB, int(RAM_SHARE * available))


def disk_free_bytes(folder: Path) -> int:
    """Free bytes on the file system holding ``folder`` (or its nearest existing parent)."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    return int(shutil.disk_usage(path).free)
