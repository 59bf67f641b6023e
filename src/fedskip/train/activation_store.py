"""Where the activation cache's entries live: this process's memory, within a budget, and disk.

An entry (:class:`PrefixStates`) holds the hidden states entering block ``j`` of every example.
:class:`ActivationStore` keeps entries in an LRU bounded by ``activation-cache-mb`` (capped by
the memory available: see :mod:`fedskip.train.cache_budget` for the sizes at 1 B scale); past
that budget they are written to the run directory's owner-only ``activation-cache/`` folder
(:data:`SPILL_DIR_ENV` when ``fedskip run`` shares it between a node's processes, else a
``process-<pid>`` subfolder removed at exit) and read back as memory maps.

Privacy: the states are derived from the site's notes (patient data at rest, see
:mod:`fedskip.train.activation_dir`) and stay on the site: never in a message, a checkpoint or an
exported model.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedskip.train.activation_dir import private_file, private_folder, remove_at_exit

log = logging.getLogger(__name__)

SPILL_DIR_ENV = "FEDSKIP_ACTIVATION_DIR"
"""The node's shared folder for cache entries (set by ``fedskip run`` on the Simulation Engine to
``OUT/activation-cache``, removed when the run ends): every entry is written there, so the
node's other processes read it instead of recomputing it."""


@dataclass
class PrefixStates:
    """The hidden states entering block ``j`` of every example, unpadded and concatenated.

    ``flat``: ``[total tokens, hidden]`` (CPU; a read-only memory map when spilled);
    ``offsets[i]``: first row of example ``i``; ``lengths[i]``: its tokens;
    ``tuple_len``: 0 when a block returns a tensor, else the length of the tuple it returns."""

    j: int
    flat: Tensor | np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    tuple_len: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return int(self.flat.shape[0] * self.flat.shape[1] * _itemsize(self.dtype))

    def rows(self, index: int) -> Tensor:
        start, n = int(self.offsets[index]), int(self.lengths[index])
        part = self.flat[start : start + n]
        if isinstance(part, np.ndarray):
            out = torch.from_numpy(np.array(part))
            return out.view(self.dtype) if self.dtype == torch.bfloat16 else out
        return part


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype


class RowWriter:
    """Where :func:`fedskip.train.prefix_cache.compute_prefix` writes an entry's rows: a tensor,
    or with ``into`` (a spill path without suffix) a memory-mapped ``into.npy`` created
    (owner-only) once the first batch gives the width and dtype."""

    def __init__(self, total: int, into: Path | None) -> None:
        self.total, self.into = total, into
        self.dtype = torch.float32
        self._tensor: Tensor | None = None
        self._map: np.memmap | None = None
        self._tmp: Path | None = None

    def target(self, hidden: Tensor) -> Tensor:
        if self._tensor is not None:
            return self._tensor
        self.dtype, width = hidden.dtype, int(hidden.shape[-1])
        if self.into is None:
            self._tensor = torch.empty((self.total, width), dtype=self.dtype)
            return self._tensor
        self._tmp = self.into.with_name(f"{self.into.name}.{os.getpid()}.tmp.npy")
        private_file(self._tmp).close()  # 0600; open_memmap keeps the mode
        raw = np.dtype(np.int16) if self.dtype == torch.bfloat16 else _numpy_dtype(self.dtype)
        shape = (self.total, width)
        self._map = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=raw, shape=shape)
        tensor = torch.from_numpy(self._map)
        self._tensor = tensor.view(torch.bfloat16) if self.dtype == torch.bfloat16 else tensor
        return self._tensor

    def flat(self) -> Tensor | np.ndarray:
        if self._tensor is None:
            return torch.empty((0, 0))
        return self._map if self._map is not None else self._tensor

    def finish(self, entry: PrefixStates) -> PrefixStates:
        """``entry`` (whose ``flat`` is :meth:`flat`) as kept: itself in memory; spilled, the
        memory map flushed and moved to ``into.npy``, its metadata written last (marking it
        complete) and the entry read back from disk."""
        if self.into is None:
            return entry
        assert self._map is not None and self._tmp is not None
        self._map.flush()
        self._tensor = self._map = None
        os.replace(self._tmp, self.into.with_suffix(".npy"))
        _write_meta(self.into, entry)
        return _read_spilled(self.into)


class ActivationStore:
    """Cache entries of this process: an LRU in memory bounded by ``budget_bytes``; entries past
    it are written to the spill folder and read back as memory maps."""

    def __init__(self) -> None:
        self.memory: OrderedDict[str, PrefixStates] = OrderedDict()
        self.spilled: dict[str, Path] = {}
        self.folder: Path | None = None
        """The run's activation folder (``OUT/activation-cache``; see :meth:`put`)."""
        self._private_dir: Path | None = None
        self.fills = 0
        self.hits = 0

    @property
    def memory_bytes(self) -> int:
        return sum(e.nbytes for e in self.memory.values())

    def get(
        self, key: str, budget_bytes: int, *, folder: Path | None = None
    ) -> PrefixStates | None:
        """The entry of ``key``: from memory, else from disk (this process's spill folder or the
        node's shared one), read into memory when it fits the budget (``folder``: as in
        :meth:`put`)."""
        if folder is not None:
            self.folder = folder
        entry = self.memory.get(key)
        if entry is not None:
            self.memory.move_to_end(key)
            return entry
        path = self.spilled.get(key) or self._shared_path(key)
        if path is None or not path.with_suffix(".npz").exists():
            return None
        entry = _read_spilled(path)
        if entry.nbytes > budget_bytes:
            return entry  # served from the memory map
        flat = torch.from_numpy(np.array(entry.flat))
        entry.flat = flat.view(entry.dtype) if entry.dtype == torch.bfloat16 else flat
        return self.put(key, entry, budget_bytes)

    def put(
        self, key: str, entry: PrefixStates, budget_bytes: int, *, folder: Path | None = None
    ) -> PrefixStates:
        """Keep ``entry`` in memory within the budget (evicting the least recently used entries
        to disk); an entry larger than the whole budget goes to disk directly. With a shared
        spill folder (:data:`SPILL_DIR_ENV`) every entry is also written there, so the other
        processes of the node (simulation workers serving the same client) read it instead of
        recomputing it. ``folder``: the run's activation folder (``OUT/activation-cache``),
        where this process spills without a shared folder."""
        if folder is not None:
            self.folder = folder
        if entry.nbytes > budget_bytes:
            return self._spill(key, entry)
        shared = self._shared_path(key)
        if shared is not None and not shared.with_suffix(".npz").exists():
            _write_spilled(shared, entry)
        self.memory[key] = entry
        while self.memory_bytes > budget_bytes and len(self.memory) > 1:
            old_key, old = self.memory.popitem(last=False)
            self._spill(old_key, old)
        return entry

    def clear(self) -> None:
        """Drop every entry (memory and spilled files) and reset the counters."""
        self.fills = self.hits = 0
        self.memory.clear()
        for path in self.spilled.values():
            for suffix in (".npy", ".npz"):
                path.with_suffix(suffix).unlink(missing_ok=True)
        self.spilled.clear()

    # ------------------------------------------------------------------ disk
    def spill_path(self, key: str, *, folder: Path | None = None) -> Path:
        """Where ``key``'s entry goes on disk (no suffix): :func:`compute_prefix` writes an
        entry past the budget there directly, and :meth:`put` then only records it."""
        if folder is not None:
            self.folder = folder
        return self._dir() / key

    def _dir(self) -> Path:
        """Where this process spills: the node's shared folder, else its own owner-only
        ``process-<pid>`` subfolder of the run's activation folder, removed at exit (never the
        system's temporary folder)."""
        shared = os.environ.get(SPILL_DIR_ENV)
        if shared:
            return private_folder(Path(shared))
        if self.folder is None:
            raise RuntimeError("activation cache: no spill folder (pass the run's folder)")
        private = self.folder / f"process-{os.getpid()}"
        if self._private_dir != private:
            private_folder(self.folder)
            self._private_dir = private_folder(private)
            remove_at_exit(private)
        return private

    def _shared_path(self, key: str) -> Path | None:
        shared = os.environ.get(SPILL_DIR_ENV)
        if not shared:
            return None
        return private_folder(Path(shared)) / key

    def _spill(self, key: str, entry: PrefixStates) -> PrefixStates:
        path = self._dir() / key
        if not path.with_suffix(".npz").exists():
            _write_spilled(path, entry)
        self.spilled[key] = path
        log.info(
            "activation cache: %s spilled to %s (%.1f MB)", key[:8], path, entry.nbytes / 10**6
        )
        return _read_spilled(path)


def _write_spilled(path: Path, entry: PrefixStates) -> None:
    flat = (
        entry.flat if isinstance(entry.flat, Tensor) else torch.from_numpy(np.asarray(entry.flat))
    )
    raw = flat.view(torch.int16) if entry.dtype == torch.bfloat16 else flat
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with private_file(tmp.with_suffix(".npy")) as fh:
        np.save(fh, raw.numpy())
    os.replace(tmp.with_suffix(".npy"), path.with_suffix(".npy"))
    _write_meta(path, entry)


def _write_meta(path: Path, entry: PrefixStates) -> None:
    """``path.npz``: the entry's offsets, lengths and dtype, written last (marks it complete)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    meta: dict[str, Any] = {
        "j": entry.j,
        "offsets": entry.offsets,
        "lengths": entry.lengths,
        "tuple_len": entry.tuple_len,
        "dtype": str(entry.dtype).removeprefix("torch."),
    }
    with private_file(tmp.with_suffix(".npz")) as fh:
        np.savez(fh, **meta)
    os.replace(tmp.with_suffix(".npz"), path.with_suffix(".npz"))  # written last: marks complete


def _read_spilled(path: Path) -> PrefixStates:
    meta = np.load(path.with_suffix(".npz"))
    dtype = getattr(torch, str(meta["dtype"]))
    flat = np.load(path.with_suffix(".npy"), mmap_mode="r")
    return PrefixStates(
        int(meta["j"]), flat, meta["offsets"], meta["lengths"], int(meta["tuple_len"]), dtype
    )


STORE = ActivationStore()
"""The process's store (a simulation worker serving several clients keeps all their entries
within one budget)."""
