"""Server checkpoints: everything a federated run needs to continue after round r.

``OUT/checkpoint/`` holds

- ``global.npz``: the global state (every tensor the server keeps, fp32), no pickles;
- ``optimizer.npz``: server-optimizer moments per tensor (FedAdam / FedYogi), if any;
- ``best.npz``: the global state of the best-validation round (``val-fraction`` > 0), if any;
- ``state.json``: the round, the resolved config, the strategy's and planner's state (tensors
  changed so far, layer scores, blocks trained per round), traffic totals and the Python /
  NumPy / PyTorch RNG states.

A checkpoint is written to ``checkpoint.new/`` and swapped in with renames, so an interruption
at any moment leaves a complete checkpoint (the new or the previous one) behind.
"""

from __future__ import annotations

import json
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from fedskip.config import Config, pinned_wire, run_wire
from fedskip.errors import ConfigError

FORMAT = 1
DIR = "checkpoint"
_MOMENT_SEP = "::"


@dataclass
class Checkpoint:
    """A saved server state after ``round``."""

    round: int
    global_state: dict[str, np.ndarray]
    strategy: dict[str, Any] = field(default_factory=dict)
    planner: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    """The plateau / validation-choice state (``val-fraction`` > 0), so a resume stops where an
    uninterrupted run would."""
    best_state: dict[str, np.ndarray] = field(default_factory=dict)
    """The global state of the best-validation round (what the run exports)."""


def capture_rng() -> dict[str, Any]:
    """Python, NumPy (global) and PyTorch (CPU) generator states, JSON-ready."""
    version, state, gauss = random.getstate()
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (missing parts are left alone)."""
    if "python" in rng:
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))
    if "numpy" in rng:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in rng:
        torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))


def _split_moments(strategy: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    plain = {k: v for k, v in strategy.items() if k not in ("m_t", "v_t")}
    arrays = {
        f"{name}{_MOMENT_SEP}{key}": value
        for name in ("m_t", "v_t")
        for key, value in strategy.get(name, {}).items()
    }
    return plain, arrays


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    cast(Any, np.savez)(path, **arrays)


def save_checkpoint(out: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``OUT/checkpoint/`` atomically; returns its path."""
    root = Path(out)
    final, new, old = root / DIR, root / f"{DIR}.new", root / f"{DIR}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    _savez(new / "global.npz", ckpt.global_state)
    plain, moments = _split_moments(ckpt.strategy)
    if moments:
        _savez(new / "optimizer.npz", moments)
    if ckpt.best_state:
        _savez(new / "best.npz", ckpt.best_state)
    meta = {
        "format": FORMAT,
        "round": ckpt.round,
        "strategy": plain,
        "planner": ckpt.planner,
        "totals": ckpt.totals,
        "config": ckpt.config,
        "rng": ckpt.rng,
        "validation": ckpt.validation,
    }
    (new / "state.json").write_text(json.dumps(meta, indent=1) + "\n", "utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def remove_checkpoint(out: str | Path) -> None:
    """Delete a previous run's checkpoint (a fresh run in the same folder must not resume it)."""
    root = Path(out)
    for name in (DIR, f"{DIR}.new", f"{DIR}.old"):
        shutil.rmtree(root / name, ignore_errors=True)


def find_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint folder of a run directory (the previous one after an interrupted swap)."""
    root = Path(out)
    for name in (DIR, f"{DIR}.old"):
        if (root / name / "state.json").is_file():
            return root / name
    return None


def _read_meta(out: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint folder of ``out`` and its ``state.json``; missing, unreadable or of
    another format is a user error."""
    folder = find_checkpoint(out)
    if folder is None:
        raise ConfigError(f"{Path(out) / DIR}: no checkpoint to resume from")
    try:
        meta = json.loads((folder / "state.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{folder / 'state.json'}: unreadable checkpoint ({exc})") from None
    _check_meta(meta, folder / "state.json")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{folder}: checkpoint format {meta.get('format')} is not {FORMAT}")
    return folder, meta


def check_checkpoint(out: str | Path) -> Path:
    """The checkpoint folder of ``out`` after checking it whole without loading its tensors:
    ``state.json`` as :func:`load_checkpoint` reads it, and every ``.npz`` archive's CRCs
    (``global.npz`` must exist). ``fedskip run --resume`` calls it before starting Ray, so a
    damaged checkpoint is a one-line error in a second, not after the federation started."""
    folder, _ = _read_meta(out)
    for name in ("global.npz", "optimizer.npz", "best.npz"):
        path = folder / name
        if name != "global.npz" and not path.exists():
            continue
        _require_archive(path)
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{path}: unreadable checkpoint ({exc})") from None
        if bad is not None:
            raise ConfigError(f"{path}: unreadable checkpoint ({bad} is damaged)")
    return folder


def checkpoint_totals(out: str | Path) -> dict[str, Any]:
    """The checkpoint's ``totals`` (seconds so far, the wire the run sent: ``wire``) from its
    ``state.json``, without loading tensors."""
    _, meta = _read_meta(out)
    totals = meta.get("totals", {})
    return dict(totals) if isinstance(totals, dict) else {}


def with_run_wire(cfg: Config, out: str | Path) -> Config:
    """``cfg`` (a run's saved config) with ``compression=auto`` pinned to the wire its
    checkpoint in ``out`` recorded, or fp16 for a checkpoint from before that was recorded
    (:func:`fedskip.config.run_wire`): a resumed run keeps the scheme it started with."""
    return pinned_wire(cfg, run_wire(cfg, str(checkpoint_totals(out).get("wire", ""))))


def load_checkpoint(out: str | Path) -> Checkpoint:
    """Read the checkpoint of the run in ``out``; a missing one is a user error."""
    folder, meta = _read_meta(out)
    global_state = _load_arrays(folder / "global.npz")
    strategy = dict(meta.get("strategy", {}))
    if (folder / "optimizer.npz").is_file():
        with np.load(folder / "optimizer.npz", allow_pickle=False) as data:
            for name in data.files:
                group, key = name.split(_MOMENT_SEP, 1)
                strategy.setdefault(group, {})[key] = data[name]
    best: dict[str, np.ndarray] = {}
    if (folder / "best.npz").is_file():
        best = _load_arrays(folder / "best.npz")
    return Checkpoint(
        round=int(meta["round"]),
        global_state=global_state,
        strategy=strategy,
        planner=meta.get("planner", {}),
        totals=meta.get("totals", {}),
        config=meta.get("config", {}),
        rng=meta.get("rng", {}),
        validation=meta.get("validation", {}),
        best_state=best,
    )


def _check_meta(meta: Any, path: Path) -> None:
    """A ``state.json`` must be an object with the round it was written after."""
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: unreadable checkpoint (not a JSON object)")
    value = meta.get("round")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: unreadable checkpoint ('round' is {value!r}, not a round >= 1)")


def _require_archive(path: Path) -> None:
    """A checkpoint ``.npz`` must exist and be a zip archive (np.load would try anything else
    as a pickle)."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: unreadable checkpoint (missing, or not a .npz archive)")


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint ``.npz``; a missing or damaged file is a user error."""
    _require_archive(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: unreadable checkpoint ({exc})") from None
