"""``fedskip comm --table``: the paper's arithmetic on LLaMA 3.2-1B, pinned, and the copy in
docs/federated.md kept identical to what the command prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedskip.cli import main
from fedskip.models.comm import wire_bytes

DOCS = Path(__file__).resolve().parents[2] / "docs" / "federated.md"
FULL = 1_235_820_547  # LLaMA 3.2-1B + a 3-label NER head
EMBED = 262_668_288
BLOCK = 60_821_504
HEAD_AND_NORM = 2048 * 3 + 3 + 2048


@pytest.fixture(scope="module")
def table() -> tuple[list[dict[str, Any]], str]:
    import contextlib
    import io

    printed, markdown = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["comm", "--model", "llama-3.2-1b", "--table", "--json"]) == 0
    with contextlib.redirect_stdout(markdown):
        assert main(["comm", "--model", "llama-3.2-1b", "--table"]) == 0
    return json.loads(printed.getvalue())["rows"], markdown.getvalue()


def test_rows_pin_the_paper_numbers(table: tuple[list[dict[str, Any]], str]) -> None:
    rows, _ = table
    assert [r["k"] for r in rows] == list(range(1, 17))
    for r in rows:
        assert r["params"] == r["k"] * BLOCK + HEAD_AND_NORM
        assert r["bytes_fp32"] == 4 * r["params"] and r["bytes_bf16"] == 2 * r["params"]
        assert r["reduction_fp32"] == pytest.approx(1 - r["params"] / FULL)
        assert r["reduction_no_embeddings_fp32"] == pytest.approx(1 - r["params"] / (FULL - EMBED))
    k8 = rows[7]
    assert k8["params"] == 486_580_227
    assert round(100 * k8["reduction_fp32"], 2) == 60.63
    assert round(100 * k8["reduction_no_embeddings_fp32"], 2) == 50.00
    assert round(100 * k8["reduction_bf16"], 2) == 80.31
    # int8: 1 byte a value + a 4-byte scale per 256 values of each tensor; a block's scales:
    # q, o 16,384 each, k, v 4,096 each, gate, up, down 65,536 each, two norms 8 each = 237,584
    scales = 8 * 237_584 + 8 + 24 + 1  # 8 blocks, the final norm, the head's weight and bias
    assert k8["bytes_int8"] == 486_580_227 + 4 * scales == 494_183_047
    assert round(100 * rows[5]["reduction_fp32"], 2) == 70.47  # k = 6: the paper's ≈ 70 %
    assert round(100 * rows[4]["reduction_no_embeddings_fp32"], 2) == 68.75  # k = 5
    assert rows[7]["lora16_params"] == 5_644_291 and rows[7]["lora8_params"] == 2_826_243
    assert rows[15]["reduction_no_embeddings_fp32"] == pytest.approx(0.0)


def test_the_docs_hold_the_table_as_printed(table: tuple[list[dict[str, Any]], str]) -> None:
    _, markdown = table
    assert "- fp32: k = 6 (70.5 %) with the embeddings counted, k = 5 (68.7 %) without" in markdown
    assert markdown in DOCS.read_text("utf-8"), (
        "regenerate: fedskip comm --model llama-3.2-1b --table"
    )


@pytest.mark.parametrize(
    ("sizes", "scheme", "expected"),
    [([1000], "fp32", 4000), ([1000], "bf16", 2000), ([256, 257], "int8", 256 + 4 + 257 + 8)],
)
def test_wire_bytes(sizes: list[int], scheme: str, expected: int) -> None:
    assert wire_bytes(sizes, scheme) == expected
