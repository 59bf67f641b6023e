"""Private federated runs end to end: the real fedskip ServerApp/ClientApp (llama-tiny, tiny
synthetic corpus) over an in-process grid — DP-SGD, client-level DP, SecAgg+."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.fl.client_app import build_client_app
from fedskip.fl.dpsgd_node import DPSGD_STATE
from fedskip.fl.server import run_server
from fedskip.privacy.accounting import PrivacyAccountant, epsilon_for
from fedskip.privacy.checks import PrivacyWarning
from tests.fl.local_grid import LocalGrid
from tests.privacy.privacy_helpers import WireGrid

pytestmark = pytest.mark.slow
NODES = 3


@pytest.fixture(scope="module", autouse=True)
def _small_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDSKIP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _cfg(out: Path, **changes: Any) -> Config:
    settings: dict[str, Any] = dict(
        model="llama-tiny",
        synth_sites=NODES,
        synth_docs=6,
        rounds=2,
        layers=1,
        max_length=32,
        stride=8,
        batch_size=8,
        lr=1e-3,
        eval_clients=False,
        quiet=True,
        out=str(out),
    )
    return Config(**{**settings, **changes})


def _grid(cfg: Config) -> WireGrid:
    grid = WireGrid(build_client_app(cfg.to_run_config()), NODES, cfg.to_run_config())
    grid.set_run(SimpleNamespace(run_id=1))
    return grid


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _accountants(grid: LocalGrid) -> list[PrivacyAccountant]:
    return [
        PrivacyAccountant.from_state_dict(dict(ctx.state.config_records[DPSGD_STATE]))
        for ctx in grid.contexts.values()
    ]


def test_dpsgd_run_reports_the_largest_client_epsilon_and_survives_resume(tmp_path: Path) -> None:
    """Round 1, then a resumed run on fresh nodes (their Context.state is gone): the server's
    ledger of reported DP-SGD steps lets each client restore its accountant exactly."""
    cfg = _cfg(tmp_path, dp="sample", noise_multiplier=1.2, rounds=1)
    first = _grid(cfg)
    run_server(first, cfg)
    once = _accountants(first)
    resumed_cfg = cfg.replace(rounds=2, resume=True)
    second = _grid(resumed_cfg)
    with pytest.warns(PrivacyWarning, match="node state lost"):
        summary = run_server(second, resumed_cfg)
    twice = _accountants(second)
    for a, b in zip(once, twice):
        ((sigma, q, steps),) = a.history
        assert b.history == [(sigma, q, 2 * steps)]  # as if never interrupted
    rows = _rows(tmp_path)
    assert rows[0]["epsilon"] == pytest.approx(max(a.epsilon(1e-5) for a in once))
    assert rows[1]["epsilon"] == pytest.approx(max(b.epsilon(1e-5) for b in twice))
    assert (summary["dp"], summary["epsilon"], summary["delta"], summary["accountant"]) == (
        "sample",
        rows[1]["epsilon"],
        1e-5,
        "rdp",
    )
    assert summary["privacy_unit"] == "patient"
    assert list(summary["dp_units"]) == ["0", "1", "2"] and min(summary["dp_units"].values()) > 0


def test_client_level_dp_run(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, dp="client", noise_multiplier=0.8, clip_norm=0.5)
    with pytest.warns(PrivacyWarning, match=r"round 1 aggregated 3 client\(s\), fewer than 50"):
        summary = run_server(_grid(cfg), cfg)
    assert summary["privacy_unit"] == "client" and "round 2 aggregated 3" in summary["dp_warning"]
    eps = [row["epsilon"] for row in _rows(tmp_path)]
    assert eps == [
        epsilon_for(noise_multiplier=0.8, sample_rate=1.0, steps=r, delta=1e-5) for r in (1, 2)
    ]
    assert summary["epsilon"] == eps[-1]


def test_secagg_run_with_dpsgd(tmp_path: Path) -> None:
    """SecAgg+ combined with sample-level DP-SGD on the clients: the main path's run, whose
    summary says what ε is per (privacy unit) and how many units each client holds."""
    cfg = _cfg(tmp_path, secagg=True, dp="sample", noise_multiplier=1.0)
    grid = _grid(cfg)
    summary = run_server(grid, cfg)
    rows = _rows(tmp_path)
    assert [r["round"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    assert all(r["replies_ok"] == NODES for r in rows)
    stage2 = [
        m
        for m in grid.received
        if m.has_content() and "fitres.num_examples" in m.content.metric_records
    ]
    assert len(stage2) == 2 * NODES  # masked-vector replies: their tensors were cleared
    assert all(len(rec) == 0 for m in stage2 for rec in m.content.array_records.values())
    assert (summary["dp"], summary["secagg"]) == ("sample", True)
    assert summary["epsilon"] == rows[-1]["epsilon"] > 0
    assert summary["privacy_unit"] == "patient"
    assert list(summary["dp_units"]) == ["0", "1", "2"] and min(summary["dp_units"].values()) > 0
    assert (tmp_path / "model" / "config.json").exists()


def test_centralized_training_with_dpsgd(tmp_path: Path) -> None:
    from fedskip.privacy.accounting import sample_rate, steps_per_epoch
    from fedskip.runs.centralized import run_centralized

    cfg = _cfg(tmp_path, dp="sample", noise_multiplier=1.0, epochs=1, method="centralized")
    summary = run_centralized(cfg)
    # dp-unit=auto on the synthetic i2b2 records, whose patients.csv maps notes to patients
    # (a patient has one to four notes): ε per patient, fewer units than training notes
    assert summary["privacy_unit"] == "patient"
    assert (
        0 < summary["dp_units"] < summary["data"]["train_documents"] < summary["train"]["examples"]
    )
    q = sample_rate(cfg.batch_size, summary["dp_units"])
    assert summary["epsilon"] == epsilon_for(
        noise_multiplier=1.0, sample_rate=q, steps=steps_per_epoch(q), delta=1e-5
    )


@pytest.mark.parametrize(
    "privacy",
    [{"secagg": True, "dp": "sample"}, {"dp": "client", "noise_multiplier": 0.5}],
    ids=["secagg-dpsgd", "client-dp"],
)
def test_personalized_private_runs_keep_the_heads_at_the_sites(
    tmp_path: Path, privacy: dict[str, Any]
) -> None:
    """personalize=head under SecAgg+ with DP-SGD, and under client-level DP: no message holds
    a personal tensor (under SecAgg+ the masked vectors hold the shared tensors only), the
    sites score and export their own models."""
    import warnings

    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle, personal_names, set_trainable, shared_names

    cfg = _cfg(tmp_path, personalize="head", eval_clients=True, **privacy)
    grid = _grid(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # 3 clients: a weak client-level ε
        summary = run_server(grid, cfg)
    bundle = load_bundle(cfg, prepare(cfg))
    trainable = set_trainable(bundle, cfg, [bundle.stack.num_blocks - 1])
    personal = personal_names(bundle, cfg, trainable)
    shared = shared_names(bundle, cfg, trainable)
    assert personal and shared
    size = sum(bundle.model.get_parameter(k).numel() for k in shared)
    assert summary["parameters"]["exchanged"] == size
    for message in grid.sent + grid.received:
        if message.has_content():
            for record in message.content.array_records.values():
                assert not set(record.keys()) & set(personal)
    rows = _rows(tmp_path)
    assert all(r["status"] == "ok" and len(r["personal_eval"]["sites"]) == NODES for r in rows)
    assert summary["personalization"]["mode"] == "head" and summary["epsilon"] > 0
    assert len(list((tmp_path / "sites").glob("*/model/config.json"))) == NODES


def test_epsilon_of_a_finished_run_is_recomputed_by_opacus_from_its_records(
    tmp_path: Path,
) -> None:
    """A privacy officer's check: the (σ, q, steps) each client composed, read back from the
    run's summary.json, give the reported ε through Opacus' own RDP accountant (not fedskip's
    wrapper); ε per patient is the largest over the hospitals."""
    from opacus.accountants import RDPAccountant

    cfg = _cfg(tmp_path, dp="sample", target_epsilon=6.0, rounds=2, dp_step_report=True)
    run_server(_grid(cfg), cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    recomputed = []
    for record in summary["dp_accounting"].values():
        accountant = RDPAccountant()
        accountant.history = [(record["noise_multiplier"], record["sample_rate"], record["steps"])]
        recomputed.append(accountant.get_epsilon(delta=summary["delta"]))
    assert len(recomputed) == NODES and summary["privacy_unit"] == "patient"
    assert summary["epsilon"] == pytest.approx(max(recomputed), rel=1e-9)
    assert 0 < max(recomputed) <= 6.0
    step = _rows(tmp_path)[-1]["dp_step"]  # what the round's noised steps looked like
    assert set(step) == {"signal_norm", "noise_norm", "clipped_share", "unit_norm"}
    assert 0 < step["signal_norm"] < step["noise_norm"]


def test_client_level_epsilon_is_flowers_own_accountants(tmp_path: Path) -> None:
    """dp=client with every hospital in every round (fixed clipping, add-or-remove one client):
    Flower's RDP accountant (``flwr[dp]``, Google's dp-accounting) gives the run's ε for the
    same Gaussian releases — the mechanism Flower models, so the numbers agree exactly."""
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    cfg = _cfg(tmp_path, dp="client", noise_multiplier=0.8, clip_norm=0.5)
    summary = run_server(_grid(cfg), cfg)
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=cfg.delta,
            population_size=NODES,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.POISSON,
        )
    )
    event = GaussianPrivacyEvent(noise_multiplier=0.8, sample_size=NODES, population_size=NODES)
    accountant.compose(event, count=cfg.rounds)
    assert summary["privacy_unit"] == "client"
    assert summary["epsilon"] == pytest.approx(accountant.get_epsilon(cfg.delta), rel=1e-9)


def test_a_site_with_its_own_model_path_trains_and_evaluates_it_under_secagg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SuperNode started with node-config ``model-path`` (its local copy of the base model,
    here with other embeddings than the coordinator's) trains under SecAgg+ and evaluates the
    same model: every runtime the nodes build is of that folder, and one serves both paths."""
    import fedskip.federation.client as client
    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle

    cfg = _cfg(tmp_path / "run", secagg=True, rounds=1, eval_clients=True)
    bundle = load_bundle(cfg, prepare(cfg))
    with torch.no_grad():
        bundle.model.get_input_embeddings().weight.mul_(0.5)  # the site's own frozen weights
    folder = tmp_path / "site-model"
    bundle.model.save_pretrained(folder)
    bundle.tokenizer.save_pretrained(folder)

    built: list[str] = []
    original = client.ClientRuntime.__init__

    def record(self: client.ClientRuntime, cfg: Config) -> None:
        built.append(cfg.model)
        original(self, cfg)

    monkeypatch.setattr(client, "_RUNTIMES", {})
    monkeypatch.setattr(client.ClientRuntime, "__init__", record)
    grid = _grid(cfg)
    for context in grid.contexts.values():
        context.node_config["model-path"] = str(folder)
    summary = run_server(grid, cfg)
    rows = _rows(tmp_path / "run")
    assert rows[0]["status"] == "ok" and rows[0]["replies_ok"] == NODES
    assert "f1" in rows[0]["client_eval"]  # the sites evaluated
    assert built == [str(folder)]  # trained and evaluated the site's model, built once
    assert summary["secagg"] is True
