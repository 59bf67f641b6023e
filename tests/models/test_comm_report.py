"""``fedskip comm`` and communication_report: the paper's arithmetic, pinned exactly."""

from __future__ import annotations

import json

import pytest

from fedskip.cli import main
from fedskip.models.comm import communication_report
from fedskip.models.loading import build_meta_model

LLAMA_BLOCK = 60_821_504
LLAMA_EMBED = 262_668_288
LLAMA_BODY = 1_235_814_400  # embedding + 16 blocks + final norm, no head
LLAMA_HEAD = 2048 * 3 + 3
MINILM_BLOCK = 1_774_464


def comm_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["comm", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_llama_3_2_1b_top_8_reproduces_the_paper(capsys) -> None:
    r = comm_json(capsys, "--model", "llama-3.2-1b", "--layers", "8")
    trainable = 8 * LLAMA_BLOCK + 2048 + LLAMA_HEAD  # 8 blocks + final norm + head
    assert r["block_params"] == LLAMA_BLOCK and r["per_block_params"] == [LLAMA_BLOCK] * 16
    assert r["embedding_params"] == LLAMA_EMBED
    assert r["total_params"] == r["full_params"] == LLAMA_BODY + LLAMA_HEAD == 1_235_820_547
    assert r["trainable_params"] == trainable == 486_580_227
    assert r["selected_layers"] == list(range(8, 16))
    assert r["bytes_per_round_up"] == r["bytes_per_round_down"] == 4 * trainable == 1_946_320_908
    assert r["full_bytes_per_round_up"] == 4 * 1_235_820_547
    assert r["reduction"] == pytest.approx(1 - 486_580_227 / 1_235_820_547)
    assert round(r["reduction"], 4) == 0.6063


def test_bf16_halves_the_bytes(capsys) -> None:
    r = comm_json(capsys, "--model", "llama-3.2-1b", "--layers", "8", "--dtype", "bf16")
    assert r["bytes_per_round_up"] == 2 * 486_580_227 and r["bytes_per_value"] == 2


def test_llama_lora_rank_16_counts_adapters_in_selected_blocks(capsys) -> None:
    r = comm_json(capsys, "--model", "llama-3.2-1b", "--layers", "8", "--lora-rank", "16")
    # q,o: 2048->2048; k,v: 2048->512; gate,up: 2048->8192; down: 8192->2048
    per_block = 16 * (2 * 4096 + 2 * 2560 + 3 * 10240)
    assert per_block == 704_512
    # + the final norm (2,048), trained with the top block as in layer skipping
    assert r["trainable_params"] == 8 * per_block + 2048 + LLAMA_HEAD == 5_644_291


def test_minilm_numbers(capsys) -> None:
    r = comm_json(capsys, "--model", "minilm", "--layers", "2")
    assert r["block_params"] == MINILM_BLOCK
    assert r["embedding_params"] == 11_918_592
    assert r["total_params"] == 22_565_376 + 1155
    assert r["trainable_params"] == 2 * MINILM_BLOCK + 1155 == 3_550_083
    assert r["bytes_per_round_up"] == 14_200_332
    assert r["final_norm_params"] == 0


def test_minilm_classification_includes_the_pooler(capsys) -> None:
    r = comm_json(
        capsys,
        "--model",
        "minilm",
        "--layers",
        "1",
        "--task",
        "classification",
        "--num-labels",
        "2",
    )
    head = 384 * 384 + 384 + 384 * 2 + 2
    assert r["total_params"] == 22_713_216 + 384 * 2 + 2  # 22.7 M with the pooler
    assert r["trainable_params"] == MINILM_BLOCK + head


@pytest.mark.parametrize(
    ("args", "selected", "note"),
    [
        (["--layer-strategy", "bottom", "--layers", "2"], [0, 1], False),
        (["--layer-strategy", "explicit", "--layer-ids", "0,5"], [0, 5], False),
        (["--layer-strategy", "interleaved", "--layers", "3"], [1, 3, 5], False),
        (["--layer-strategy", "rotating", "--layers", "2"], [4, 5], True),
        (["--layer-strategy", "importance", "--layers", "2"], [4, 5], True),
    ],
)
def test_strategies(capsys, args, selected, note) -> None:
    r = comm_json(capsys, "--model", "minilm", *args)
    assert r["selected_layers"] == selected
    assert r["trainable_params"] == len(selected) * MINILM_BLOCK + 1155
    assert ("note" in r) == note


def test_decoder_bottom_blocks_leave_final_norm_frozen() -> None:
    r = communication_report(build_meta_model("llama-tiny"), layers=1, strategy="bottom")
    assert r["trainable_params"] == 36_992 + 195
    r = communication_report(build_meta_model("llama-tiny"), layers=1, train_final_norm=False)
    assert r["trainable_params"] == 36_992 + 195


def test_table_output(capsys) -> None:
    assert main(["comm", "--model", "llama-3.2-1b", "--layers", "8"]) == 0
    out = capsys.readouterr().out
    assert "16 x 60,821,504 parameters" in out
    assert "486,580,227" in out and "1.95 GB" in out and "60.63 %" in out
    assert "GiB" not in out and "MB = 10^6 bytes, GB = 10^9 bytes" in out  # as everywhere


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "7"], "config key 'layers': 7 must be between 1 and 6"),
        (["--layers", "0"], "config key 'layers': 0 must be between 1 and 6"),
        (["--lora-rank", "-1"], "config key 'lora-rank': -1 must be >= 0"),
        (["--num-labels", "0"], "--num-labels: 0 must be >= 1"),
        (
            ["--layer-strategy", "explicit", "--layer-ids", "0,9"],
            "'layer-ids': [9] out of range 0..5",
        ),
        (
            ["--layer-strategy", "explicit", "--layer-ids", "a"],
            "'layer-ids': 'a' must be comma-separated",
        ),
        (["--model", "org/uncached"], "model 'org/uncached' is not a preset"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, message) -> None:
    assert main(["comm", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
