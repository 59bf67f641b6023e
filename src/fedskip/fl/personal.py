"""A site's personal tensors (``personalize``): kept at the site across rounds, never sent.

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


def load_personal(context: Context, folder: Path, run: str, *, upto: int) -> Tensors:
    """The newest personal state of a round ≤ ``upto`` (empty before the site's first round):
    from ``Context.state`` when it holds such a round of this run, else from the disk."""
    meta = context.state.config_records.get(PERSONAL_ROUND)
    if meta is not None and meta.get("run") == run and int(str(meta["round"])) <= upto:
        record = context.state.array_records[PERSONAL_STATE]
        return {k: torch.from_numpy(np.array(a.numpy(), copy=True)) for k, a in record.items()}
    rounds = [r for r in _files(folder / run) if r <= upto]
    if not rounds:
        return {}
    with np.load(_files(folder / run)[max(rounds)]) as data:
        return {k: torch.from_numpy(np.array(data[k], np.float32)) for k in data.files}


def save_personal(
    context: Context, folder: Path, run: str, server_round: int, state: Mapping[str, torch.Tensor]
) -> None:
    """Keep ``state`` (this round's personal tensors) in ``Context.state`` and on the disk."""
    arrays = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in state.items()}
    record = ArrayRecord()
    for name, array in arrays.items():
        record[name] = Array(np.ascontiguousarray(array))
    context.state[PERSONAL_STATE] = record
    context.state[PERSONAL_ROUND] = ConfigRecord({"round": server_round, "run": run})
    target = folder / run
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"round-{server_round:05d}.npz"
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
    kept = _files(target)
    for old in sorted(kept)[:-KEEP_FILES]:
        kept[old].unlink(missing_ok=True)


@dataclass
class SiteState:
    """Where one site keeps its personal tensors in one run (see the module docstring)."""

    context: Context
    folder: Path
    """The site's folder (:func:`site_dir`)."""
    run: str

    def load(self, *, upto: int) -> Tensors:
        return load_personal(self.context, self.folder / "personal", self.run, upto=upto)

    def save(self, server_round: int, state: Mapping[str, torch.Tensor]) -> None:
        save_personal(self.context, self.folder / "personal", self.run, server_round, state)


def site_state(
    cfg: Config, context: Context, site_name: str, config: Mapping[str, Any]
) -> SiteState | None:
    """The site's personal state for this message's run; None without ``personalize``."""
    if cfg.personalize == "none":
        return None
    from fedskip.fl.messages import RUN_TOKEN

    run = safe_name(str(config.get(RUN_TOKEN, "run")))
    return SiteState(context, site_dir(cfg, context.node_config, site_name), run)
