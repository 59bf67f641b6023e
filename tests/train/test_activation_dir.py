"""Cached hidden states on disk: only inside the run directory, owner-only, never left behind."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedskip.models.freeze import apply_layer_skip
from fedskip.models.layers import discover_layers
from fedskip.train import activation_store as st
from fedskip.train import prefix_cache as pc
from fedskip.train.activation_dir import activation_dir, activation_folder
from fedskip.train.engine import predict
from tests.train.test_prefix_cache import assert_same_logits, collate_for, features, tiny


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """A usual umask (022): a file created without a mode would be world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to ``root``."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in paths}


def test_spilled_states_stay_in_the_run_directory_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(st.SPILL_DIR_ENV, raising=False)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))  # what gettempdir() answers
    model = tiny("bert")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [3])
    feats, coll = features(), collate_for("token")
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    folder = activation_dir(tmp_path / "run")
    st.STORE.clear()
    cache = pc.ActivationCache(stack, budget_mb=0, batch_size=4, folder=folder)  # all spills
    cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache)
    assert_same_logits(plain, cached)
    modes = _modes(folder)
    own = f"process-{os.getpid()}"
    assert modes.pop(".") == modes.pop(own) == 0o700
    assert sorted(Path(p).suffix for p in modes) == [".npy", ".npz"]
    assert all(p.startswith(own + "/") and mode == 0o600 for p, mode in modes.items())
    assert not [p for p in system_tmp.rglob("*") if p.suffix in (".npy", ".npz")]
    st.STORE.clear()


def test_a_shared_node_folder_is_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = activation_dir(tmp_path / "run")
    monkeypatch.setenv(st.SPILL_DIR_ENV, str(shared))
    model = tiny("llama")
    stack = discover_layers(model)
    apply_layer_skip(model, stack, [2])
    st.STORE.clear()
    predict(
        model,
        features(),
        collate_for("token"),
        batch_size=4,
        device="cpu",
        cache=pc.ActivationCache(stack, batch_size=4),
    )
    modes = _modes(shared)
    assert modes.pop(".") == 0o700 and len(modes) == 2
    assert set(modes.values()) == {0o600}
    st.STORE.clear()


def test_a_killed_runs_folder_is_removed_before_the_run_and_this_runs_after(
    tmp_path: Path,
) -> None:
    stale = activation_dir(tmp_path) / "process-999999"
    stale.mkdir(parents=True)
    (stale / "left-by-kill-9.npy").write_bytes(b"hidden states")
    with (
        pytest.raises(RuntimeError, match="training failed"),
        activation_folder(tmp_path) as folder,
    ):
        assert not folder.exists()  # the stale entries are gone before the run starts
        (folder / "shared").mkdir(parents=True)
        (folder / "shared" / "entry.npy").write_bytes(b"this run's states")
        raise RuntimeError("training failed")
    assert list(tmp_path.iterdir()) == []
    with activation_folder(tmp_path) as folder:  # a clean end removes it too
        folder.mkdir()
    assert list(tmp_path.iterdir()) == []
