"""Tiny federations for the Flower-layer tests: 3 JSONL sites, llama-tiny, in-process grid."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.config import Config
from tests.fl.local_grid import LocalGrid, set_task_identity

SENTENCES = [
    (["patient", "denies", "chest", "pain"], ["O", "O", "B-problem", "I-problem"]),
    (["ordered", "a", "chest", "x-ray"], ["O", "O", "B-test", "I-test"]),
    (["started", "aspirin", "today"], ["O", "B-treatment", "O"]),
    (["no", "fever", "noted"], ["O", "B-problem", "O"]),
]
DATA_WORDS = sorted({w for tokens, _ in SENTENCES for w in tokens if len(w) > 3})
"""Words of the data that must never appear in a message."""


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)
    set_task_identity()


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    """Three NER sites of 5 one-sentence notes each."""
    root = tmp_path / "sites"
    for s in range(3):
        folder = root / f"site-{s}"
        folder.mkdir(parents=True)
        lines = []
        for i in range(5):
            tokens, tags = SENTENCES[(i + s) % len(SENTENCES)]
            lines.append(json.dumps({"id": f"d{s}-{i}", "tokens": tokens, "tags": tags}))
        (folder / "notes.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return root


@pytest.fixture
def make_cfg(sites: Path, tmp_path: Path) -> Callable[..., Config]:
    def make(**changes: Any) -> Config:
        base: dict[str, Any] = dict(
            data=str(sites),
            model="llama-tiny",
            device="cpu",
            quiet=True,
            max_length=16,
            stride=4,
            test_fraction=0.2,
            batch_size=2,
            layers=1,
            rounds=2,
            lr=1e-3,
            local_epochs=1,
            compression="none",
            out=str(tmp_path / "run"),
        )
        base.update(changes)
        return Config(**base)

    return make


@pytest.fixture
def run_local() -> Callable[..., tuple[dict[str, Any], LocalGrid]]:
    """Run the real ServerApp logic over a LocalGrid of real ClientApps; returns (summary, grid)."""

    def run(cfg: Config, *, tamper: Any = None) -> tuple[dict[str, Any], LocalGrid]:
        from fedskip.fl.client_app import build_client_app
        from fedskip.fl.server import run_server
        from fedskip.pipeline import prepare

        run_config = cfg.to_run_config()
        grid = LocalGrid(
            build_client_app(run_config), prepare(cfg).num_clients, run_config, tamper=tamper
        )
        return run_server(grid, cfg), grid

    return run


@pytest.fixture
def interrupted(
    run_local: Callable[..., tuple[dict[str, Any], LocalGrid]], monkeypatch: pytest.MonkeyPatch
) -> Callable[[Config, int], None]:
    """``interrupted(cfg, after)``: run ``cfg`` and stop it with KeyboardInterrupt right after
    round ``after`` has ended (its checkpoint written), as Ctrl-C would; a resume follows."""

    def run(cfg: Config, after: int) -> None:
        from fedskip.fl.server import ServerRun

        original = ServerRun.on_round_end

        def stop(self: ServerRun, rnd: int, arrays: Any, record: Any) -> None:
            original(self, rnd, arrays, record)
            if rnd == after:
                raise KeyboardInterrupt

        monkeypatch.setattr(ServerRun, "on_round_end", stop)
        try:
            with pytest.raises(KeyboardInterrupt):
                run_local(cfg)
        finally:
            monkeypatch.setattr(ServerRun, "on_round_end", original)

    return run
