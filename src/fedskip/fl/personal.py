"""A site's own state across rounds, never sent: its personal tensors (``personalize``) and
the error-feedback residuals of its compressed updates (``compression``).

Under ``personalize=head`` / ``norms`` / ``head+norms`` each site trains its task head and/or the
norms inside the trained blocks (:func:`fedskip.trainability.personal_names`) together with the
shared blocks, but replies with the shared tensors only; the personal ones stay on the node:

- **across rounds**: in the node's ``Context.state`` (:data:`PERSONAL_STATE`, an ArrayRecord,
  with the round that produced it in :data:`PERSONAL_ROUND`), as in simulation;
- **on the node's disk**, after every round it trains, as ``<site dir>/personal/<run>/
  round-<r>.npz`` (fp32), so a restarted SuperNode — or a resumed simulation, whose Contexts are
  new — continues exactly. ``<site dir>`` is node-config ``state-dir``, default
  ``OUT/sites/<site name>``; ``<run>`` is the run token the server sends (``fedskip-run``,
  fixed at a fresh start and kept in the server's checkpoint), so a new run never inherits the
  personal state of an earlier run in the same folder.

Round ``t`` trains from the newest state of a round before ``t``, and evaluates with the newest
of a round up to ``t``: when the server resumes after round ``t - 1`` (its checkpoint), a site
that already trained round ``t`` before the interruption still starts round ``t`` from the state
of round ``t - 1`` or earlier. The two newest files are kept.

On the last round the site exports its own model (shared part + personal part) to
``<site dir>/model``, loadable with plain transformers.

The error-feedback residuals (:data:`ERROR_FEEDBACK`) follow the same rules in
``<site dir>/error-feedback/<run>/``: round ``t`` compresses with the residuals of the newest
round before ``t``, so a resumed run sends (and ends with) exactly what an uninterrupted one
does. Files are written owner-only (0600): both kinds are derived from the site's training.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context

from fedskip.config import Config
from fedskip.fl.wire_compression import EF_STATE
from fedskip.train.activation_dir import private_file

PERSONAL_STATE = "fedskip.personal"
"""``Context.state`` ArrayRecord of the site's personal tensors (fp32, by tensor name)."""
PERSONAL_ROUND = "fedskip.personal-round"
"""``Context.state`` ConfigRecord: ``round`` that produced :data:`PERSONAL_STATE`, ``run``."""
STATE_DIR = "state-dir"
"""Node-config key: the site's own folder (personal state, site export)."""
KEEP_FILES = 2

Tensors = dict[str, torch.Tensor]


def site_dir(cfg: Config, node_config: Mapping[str, Any], site_name: str) -> Path:
    """The site's folder: node-config ``state-dir``, else ``OUT/sites/<site name>``."""
    explicit = node_config.get(STATE_DIR)
    if explicit:
        return Path(str(explicit)).expanduser()
    return Path(cfg.out) / "sites" / safe_name(site_name)


def safe_name(name: str) -> str:
    """A site name usable as one folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "site"


def _files(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in folder.glob("round-*.npz"):
        digits = path.stem.removeprefix("round-")
        if digits.isdigit():
            found[int(digits)] = path
    return found


@dataclass(frozen=True)
class Kept:
    """One kind of state a site keeps across rounds, never sent: its ``Context.state`` records
    (an ArrayRecord of fp32 arrays by tensor name, and a ConfigRecord with the ``round`` that
    produced them and the ``run``) and its subfolder of the site's folder."""

    arrays: str
    meta: str
    folder: str


PERSONAL = Kept(PERSONAL_STATE, PERSONAL_ROUND, "personal")
"""The site's personal tensors (``personalize``)."""
ERROR_FEEDBACK = Kept(EF_STATE, "fedskip.error-feedback-round", "error-feedback")
"""The site's error-feedback residuals of compressed updates (:mod:`fedskip.fl.wire_compression`,
whose :data:`~fedskip.fl.wire_compression.EF_STATE` is ``arrays``): what quantization dropped
from its last update, added to its next; derived from its training like the update itself."""


def restore_kept(context: Context, folder: Path, kept: Kept, run: str, *, upto: int) -> None:
    """Make ``context.state[kept.arrays]`` the newest state of a round ≤ ``upto`` of ``run``:
    the one already there if it qualifies, else the one on the disk (after a restart, whose
    Context is new); without any, the records are removed (the site's first round)."""
    meta = context.state.config_records.get(kept.meta)
    if meta is not None and meta.get("run") == run and int(str(meta["round"])) <= upto:
        return
    for key in (kept.arrays, kept.meta):
        context.state.pop(key, None)
    files = _files(folder / kept.folder / run)
    rounds = [r for r in files if r <= upto]
    if not rounds:
        return
    with np.load(files[max(rounds)]) as data:
        arrays = {k: np.array(data[k], np.float32) for k in data.files}
    context.state[kept.arrays] = _record(arrays)
    context.state[kept.meta] = ConfigRecord({"round": max(rounds), "run": run})


def persist_kept(context: Context, folder: Path, kept: Kept, run: str, server_round: int) -> None:
    """Write ``context.state[kept.arrays]`` (this round's state) as ``<folder>/<kept.folder>/
    <run>/round-<r>.npz``, owner-only (0600), keeping the :data:`KEEP_FILES` newest."""
    record = context.state.array_records[kept.arrays]
    context.state[kept.meta] = ConfigRecord({"round": server_round, "run": run})
    arrays = {k: a.numpy() for k, a in record.items()}
    target = folder / kept.folder / run
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"round-{server_round:05d}.npz"
    tmp = path.with_name(path.stem + ".tmp.npz")
    with private_file(tmp) as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
    files = _files(target)
    for old in sorted(files)[:-KEEP_FILES]:
        files[old].unlink(missing_ok=True)


def _record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    record = ArrayRecord()
    for name, array in arrays.items():
        record[name] = Array(np.ascontiguousarray(array))
    return record


@dataclass
class SiteState:
    """Where one site keeps its own state in one run (see the module docstring)."""

    context: Context
    folder: Path
    """The site's folder (:func:`site_dir`)."""
    run: str

    def load(self, *, upto: int) -> Tensors:
        """The personal tensors of the newest round ≤ ``upto`` (empty before the first)."""
        restore_kept(self.context, self.folder, PERSONAL, self.run, upto=upto)
        record = self.context.state.array_records.get(PERSONAL.arrays)
        if record is None:
            return {}
        return {k: torch.from_numpy(np.array(a.numpy(), copy=True)) for k, a in record.items()}

    def save(self, server_round: int, state: Mapping[str, torch.Tensor]) -> None:
        """Keep ``state`` (this round's personal tensors) in ``Context.state`` and on the disk."""
        arrays = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in state.items()}
        self.context.state[PERSONAL.arrays] = _record(arrays)
        persist_kept(self.context, self.folder, PERSONAL, self.run, server_round)

    def restore(self, kept: Kept, *, upto: int) -> None:
        """:func:`restore_kept` for this site."""
        restore_kept(self.context, self.folder, kept, self.run, upto=upto)

    def persist(self, kept: Kept, server_round: int) -> None:
        """:func:`persist_kept` for this site."""
        persist_kept(self.context, self.folder, kept, self.run, server_round)


def site_files(
    cfg: Config, context: Context, site_name: str, config: Mapping[str, Any]
) -> SiteState:
    """The site's own state for this message's run (keyed by the run token the server sends)."""
    from fedskip.fl.messages import RUN_TOKEN

    run = safe_name(str(config.get(RUN_TOKEN, "run")))
    return SiteState(context, site_dir(cfg, context.node_config, site_name), run)


def site_state(
    cfg: Config, context: Context, site_name: str, config: Mapping[str, Any]
) -> SiteState | None:
    """The site's personal state for this message's run; None without ``personalize``."""
    if cfg.personalize == "none":
        return None
    return site_files(cfg, context, site_name, config)
