"""Every rule between config keys, one row each: the offending settings → the one-line
ConfigError (``Config``) and exit status 2 (``fedskip run``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fedskip.config import (
    CROSS_FIELD_RULES,
    DYNAMIC_STRATEGIES,
    LAYER_STRATEGIES,
    SECAGG_STRATEGIES,
    Config,
    to_key,
)
from fedskip.errors import ConfigError

# (rule, offending settings, the error line)
RULES: list[tuple[str, dict[str, Any], str]] = [
    (
        "_random_init_reads_no_weights",
        {"model_init": "random", "model_path": "/w"},
        "config key 'model-path': model-init=random reads no weights, so '/w' would be "
        "ignored; drop model-path or set model-init=pretrained",
    ),
    (
        "explicit needs layer-ids",
        {"layer_strategy": "explicit"},
        "config key 'layer-ids' is required for layer-strategy=explicit, e.g. '0,5'",
    ),
    (
        "_stride_below_max_length",
        {"stride": 32, "max_length": 32},
        "config key 'stride': 32 must be smaller than max-length (32), minus the tokenizer's "
        "special tokens",
    ),
    (
        "_client_eval_needs_a_test_split",
        {"test_fraction": 0.0},
        "config key 'test-fraction': 0 leaves the clients no test split for eval-clients=true; "
        "set test-fraction > 0 or eval-clients=false",
    ),
    (
        "_min_replies_within_clients",
        {"partition": "iid", "clients": 2, "min_replies": 3},
        "config key 'min-replies': 3 exceeds clients=2",
    ),
    (
        "_lora_needs_static_layers",
        {"lora_rank": 4, "layer_strategy": "rotating"},
        "config key 'lora-rank': LoRA inside selected blocks needs a static layer-strategy "
        "(top, bottom, interleaved, explicit), not rotating",
    ),
    (
        "_dp_delta",
        {"dp": "sample", "delta": 0.0},
        "config key 'delta': 0.0 must be > 0 and < 1 with dp=sample",
    ),
    (
        "_dp_clip_norm",
        {"dp": "client", "clip_norm": 0.0},
        "config key 'clip-norm': must be > 0 with dp=client",
    ),
    (
        "_client_dp_needs_a_federation",
        {"dp": "client", "method": "centralized"},
        "config key 'dp': client-level DP protects a hospital's contribution to a federation; "
        "use dp=sample (DP-SGD) for centralized or local training",
    ),
    (
        "_client_dp_samples_clients",
        {"dp": "client", "fraction_train": 0.0},
        "config key 'fraction-train': 0.0 must be > 0 with dp=client",
    ),
    (
        "_compression_with_client_dp",
        {"dp": "client", "compression": "int8"},
        "config key 'compression': int8 cannot be combined with dp=client (clipping and noise "
        "act on the plain update); set compression=none",
    ),
    (
        "_secagg_layer_strategy",
        {"secagg": True, "layer_strategy": "importance"},
        "config key 'layer-strategy': 'importance' cannot be used with secagg=true (clients "
        "would score and pick different layers, but SecAgg+ sums vectors of one shape); use one "
        "of top, bottom, interleaved, explicit, rotating",
    ),
    (
        "_secagg_shares",
        {"secagg": True, "secagg_shares": 2},
        "config key 'secagg-shares': 2 must be >= 3 for SecAgg+",
    ),
    (
        "_secagg_threshold",
        {"secagg": True, "secagg_shares": 3, "secagg_threshold": 3},
        "config key 'secagg-threshold': 3 must be >= 2 and < secagg-shares (3)",
    ),
    (
        "_secagg_threshold",
        {"secagg": True, "secagg_shares": 5, "secagg_threshold": 1},
        "config key 'secagg-threshold': 1 must be >= 2 and < secagg-shares (5)",
    ),
    (
        "_secagg_fixed_clipping",
        {"secagg": True, "dp": "client", "dp_clipping": "adaptive"},
        "config key 'dp-clipping': secagg=true with dp=client needs dp-clipping=fixed (clients "
        "clip before masking; adaptive clipping is not supported under SecAgg+)",
    ),
    (
        "_secagg_plain_values",
        {"secagg": True, "compression": "bf16"},
        "config key 'compression': bf16 cannot be combined with secagg=true (masked sums need "
        "plain values); set compression=none",
    ),
    (
        "_personalize_needs_a_federation",
        {"personalize": "head", "method": "local"},
        "config key 'personalize': head needs a federated method (a site's own model is what "
        "method=local trains already); set personalize=none",
    ),
    (
        "_lora_needs_static_layers",
        {"lora_rank": 4, "layer_strategy": "importance", "method": "centralized"},
        "config key 'lora-rank': LoRA inside selected blocks needs a static layer-strategy "
        "(top, bottom, interleaved, explicit), not importance",
    ),
    (
        "_personalize_needs_client_eval",
        {"personalize": "norms", "eval_clients": False},
        "config key 'eval-clients': personalize needs eval-clients=true (only a site can score "
        "and export its personalized model)",
    ),
    (
        "personalize choices",
        {"personalize": "body"},
        "config key 'personalize': 'body' is not one of none, head, norms, head+norms",
    ),
    (
        "audit guesses",
        {"audit_canaries": 4, "audit_guesses": 5},
        "config key 'audit-guesses': 5 exceeds audit-canaries (4)",
    ),
    (
        "audit data",
        {"audit_canaries": 4, "data": "sites"},
        "config key 'audit-canaries': no privacy audit with data=sites (the coordinator holds no "
        "data)",
    ),
    (
        "audit method",
        {"audit_canaries": 4, "method": "local"},
        "config key 'audit-canaries': no privacy audit with method=local (no single model)",
    ),
    (
        "_patience_needs_validation",
        {"patience": 3},
        "config key 'patience': 3 needs a validation split; set val-fraction > 0 (the plateau "
        "is never judged on the test set)",
    ),
    (
        "_validation_needs_data_here",
        {"val_fraction": 0.1, "data": "sites"},
        "config key 'val-fraction': not supported with data=sites (the coordinator holds no "
        "data to score a validation split on); set val-fraction=0 and patience=0",
    ),
    (
        "_pooled_training_needs_data_here",
        {"method": "centralized", "data": "sites", "labels": "problem"},
        "config key 'data': centralized training needs the data here; data=sites keeps it at "
        "the sites (give a dataset path or synth)",
    ),
]
IDS = [f"{rule}-{i}" for i, (rule, _, _) in enumerate(RULES)]


@pytest.mark.parametrize(("rule", "settings", "message"), RULES, ids=IDS)
def test_refused_by_the_config(rule: str, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(**settings)
    assert str(caught.value) == message
    assert "\n" not in message


@pytest.mark.parametrize(("rule", "settings", "message"), RULES, ids=IDS)
def test_fedskip_run_exits_2_with_the_line(
    rule: str, settings: dict[str, Any], message: str, tmp_path: Path, capsys: Any
) -> None:
    from fedskip.cli import main

    pairs = [
        f"{to_key(k)}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()
    ]
    assert main(["run", "--set", *pairs, f"out={tmp_path}"]) == 2
    assert capsys.readouterr().err == f"fedskip: error: {message}\n"


def _unvalidated(**settings: Any) -> Config:
    """A Config with ``settings`` over the defaults, not validated (to call one rule)."""
    cfg = object.__new__(Config)
    for name, value in {**dataclasses.asdict(Config()), **settings}.items():
        setattr(cfg, name, value)
    return cfg


def test_every_rule_has_a_row_that_trips_that_rule() -> None:
    rules = {rule.__name__: rule for rule in CROSS_FIELD_RULES}
    rows = [(name, settings, message) for name, settings, message in RULES if name in rules]
    assert {name for name, _, _ in rows} == set(rules)
    for name, settings, message in rows:
        assert rules[name](_unvalidated(**settings)) == message
        assert rules[name](Config()) == ""  # the defaults pass every rule


def test_strategy_lists_match_the_selectors() -> None:
    from fedskip.selection import get_selector

    dynamic = {
        s for s in LAYER_STRATEGIES if get_selector(s).dynamic or get_selector(s).needs_scores
    }
    assert dynamic == set(DYNAMIC_STRATEGIES)
    assert set(SECAGG_STRATEGIES) == set(LAYER_STRATEGIES) - {"importance"}


@pytest.mark.parametrize(
    "settings",
    [
        {"secagg": True, "dp": "sample"},
        {"secagg": True, "dp": "client", "layer_strategy": "rotating"},
        {"lora_rank": 4, "method": "lora", "layer_strategy": "rotating"},
        {"compression": "int8", "dp": "sample"},
        {"dp": "client", "dp_clipping": "adaptive"},
        {"dp": "sample", "method": "centralized"},
        {"personalize": "head+norms", "secagg": True, "dp": "client"},
        {"personalize": "head", "dp": "sample", "lora_rank": 4},
        {"personalize": "norms", "compression": "int8", "method": "fedavg"},
        {"test_fraction": 0.0, "method": "centralized"},
        {"test_fraction": 0.0, "eval_clients": False},
    ],
)
def test_combinations_that_work_are_accepted(settings: dict[str, Any]) -> None:
    Config(**settings)
