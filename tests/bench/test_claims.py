"""The paper's claims: one table of results rows per verdict."""

from __future__ import annotations

from typing import Any

import pytest

from fedskip.bench.claims import check_claims
from fedskip.bench.table import ResultRow


def row(name: str, method: str, final: float, groups: str = "methods", **kw: Any) -> ResultRow:
    extra = kw.pop("extra", {})
    return ResultRow(name, groups, "ner", method, "f1", "done", final=final, extra=extra, **kw)


def methods(skip: float = 0.88, central: float = 0.90, reduction: float = 0.8) -> list[ResultRow]:
    return [
        row("c", "centralized", central, mb=0.0),
        row("l", "local", 0.60, mb=0.0),
        row("f", "fedavg", 0.86, mb=100.0, reduction=0.0, gap_points=100 * (0.86 - central)),
        row("p", "fedprox", 0.85, mb=100.0, reduction=0.0),
        row("r", "lora", 0.80, mb=5.0, reduction=0.95),
        row(
            "s",
            "layerskip",
            skip,
            mb=100 * (1 - reduction),
            reduction=reduction,
            gap_points=100 * (skip - central),
            layers=2,
        ),
    ]


def axes(iid: float, worst: float, plain: float, eps8: float) -> list[ResultRow]:
    return [
        row("s-iid", "layerskip", iid, "noniid", extra={"partition": "iid"}),
        row("s-d1", "layerskip", worst + 0.01, "noniid", extra={"partition": "dir1"}),
        row("s-d01", "layerskip", worst, "noniid", extra={"partition": "dir0.1"}),
        row("s-p", "layerskip", plain, "privacy", extra={"target_epsilon": 0}),
        row("s-e8", "layerskip", eps8, "privacy", target_epsilon=8.0, epsilon=7.9),
        row("s-e1", "layerskip", 0.1, "privacy", target_epsilon=1.0, epsilon=0.99),
    ]


def verdicts(rows: list[ResultRow]) -> list[bool | None]:
    return [c.held for c in check_claims(rows)]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (methods() + axes(0.88, 0.86, 0.88, 0.85), [True, True, None, None, True, True, True]),
        # 64% less: below 70% - 5 points
        (methods(reduction=0.64), [False, True, None, None, True, None, None]),
        # 2.1 points below centralized, and below FedAvg's 0.86
        (methods(skip=0.849), [True, False, None, None, False, None, None]),
        # non-IID costs 6 points; DP at ε=8 costs 5.5 points
        (methods() + axes(0.88, 0.82, 0.88, 0.825), [True, True, None, None, True, False, False]),
        ([], [None, None, None, None, None, None, None]),
    ],
)
def test_verdicts(rows: list[ResultRow], expected: list[bool | None]) -> None:
    assert verdicts(rows) == expected


def test_evidence_quotes_the_numbers() -> None:
    claims = check_claims(methods() + axes(0.88, 0.86, 0.88, 0.85))
    assert claims[0].evidence.startswith("ner: 20.0 MB vs FedAvg 100.0 MB → 80.0% less")
    assert "0.880 vs centralized 0.900 (-2.0 points, -2.2% relative)" in claims[1].evidence
    assert "fedavg 0.860 (≤)" in claims[4].evidence and "local 0.600 (≤)" in claims[4].evidence
    assert "worst dir0.1 0.860 (2.0 points lower)" in claims[5].evidence
    assert "ε=8: 0.850 (spent 7.90), ε=1: 0.100 (spent 0.99)" in claims[6].evidence
    assert [c.verdict for c in claims] == ["held"] * 2 + ["not tested"] * 2 + ["held"] * 3


def test_noniid_evidence_says_higher_when_skewed_data_scores_better() -> None:
    claims = check_claims(methods() + axes(0.86, 0.88, 0.88, 0.85))
    assert "worst dir0.1 0.880 (2.0 points higher)" in claims[5].evidence
    assert claims[5].verdict == "held"


def test_beats_the_baselines_is_partly_tested_while_baselines_are_missing() -> None:
    from fedskip.bench.claims import check_baselines

    present = [r for r in methods() if r.method in ("centralized", "local", "layerskip")]
    claim = check_baselines(present)
    assert (claim.held, claim.verdict) == (None, "partly tested")
    assert claim.evidence == (
        "ner: layerskip 0.880 vs local 0.600 (≤); not run: ner fedavg, ner fedprox, ner lora "
        "— held when layer skipping ≥ every baseline on every task"
    )
    beaten = [*present, row("f", "fedavg", 0.95)]  # one baseline beats it: not held regardless
    assert check_baselines(beaten).verdict == "not held"
    assert check_baselines(methods()).verdict == "held"


def test_claims_at_half_the_blocks_read_the_layer_axis_run_of_that_k() -> None:
    """The paper's operating point (half the blocks: 3 of MiniLM's 6) is judged on the layer
    axis's k = 3 run and its own same-blocks reference, not on the methods group's k = 2."""
    from fedskip.bench.claims import check_claims_at, half_the_blocks

    rows = methods()
    rows[2].layers = 6  # FedAvg trains every block
    rows += [
        row("s3", "layerskip", 0.89, "layers", layers=3, mb=30.0, reduction=0.7),
        row("c3", "centralized", 0.895, "gaps", layers=3),
        row("c2", "centralized", 0.70, "gaps", layers=2),
    ]
    assert half_the_blocks(rows) == 3
    claims = check_claims_at(rows, 3)
    assert [c.title for c in claims] == [
        "≈70% less communication than full FedAvg (k = 3)",
        "within 2% of centralized training (k = 3)",
        "federation gap: within 2 points of centralized, same blocks (k = 3)",
        "capacity gap: k blocks within 2 points of full fine-tuning (centralized) (k = 3)",
        "beats the baselines (k = 3)",
    ]
    assert [c.held for c in claims] == [True, True, True, True, True]
    assert "ner k=3: federated 0.890 vs centralized same blocks 0.895 (-0.5 points)" in (
        claims[2].evidence
    )
    assert "ner: 30.0 MB vs FedAvg 100.0 MB → 70.0% less" in claims[0].evidence
    # at the default k the same rows compare k = 2 with its own same-blocks run (0.70)
    assert "federated 0.880 vs centralized same blocks 0.700" in check_claims(rows)[2].evidence


def test_the_privacy_claim_reads_the_default_variant_only() -> None:
    """k = 4 and LoRA-in-blocks variants share the method ``layerskip``; the claim compares the
    suite's default variant with and without DP, never one variant's DP run with another's
    plain one."""
    from fedskip.bench.claims import check_privacy

    def dp(name: str, variant: str, final: float, eps: float | None) -> ResultRow:
        extra = {"target_epsilon": eps or 0, "privacy_variant": variant}
        return row(name, "layerskip", final, "privacy", extra=extra, target_epsilon=eps)

    rows = [
        dp("k4", "layerskip-k4", 0.95, None),
        dp("k4-e8", "layerskip-k4", 0.10, 8.0),
        dp("k2", "layerskip", 0.90, None),
        dp("k2-e8", "layerskip", 0.88, 8.0),
    ]
    claim = check_privacy(rows)
    assert claim.held is True
    assert claim.evidence.startswith("layerskip no DP 0.900; ε=8: 0.880")
