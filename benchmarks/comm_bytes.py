"""Bytes per round: measured on the wire (a real run's ``metrics.jsonl``) versus the analytic
count of ``fedskip comm`` (:func:`fedskip.models.comm.communication_report`).

For each run directory: the measured bytes per client and round are the round's ``bytes_up``
(the ``ArrayRecord.count_bytes()`` of the replies) divided by the clients that replied, and
``bytes_down`` divided by the clients sampled; the analytic figure is the trainable parameters
for the run's model, method, k, strategy and LoRA rank / frozen A (every parameter for full
fine-tuning: FedAvg, or k = all blocks) times the bytes per value on the wire: 4 (fp32), 2
(``compression`` fp16/bf16) or 1 + 4/256 (int8 codes plus one fp32 scale per block of 256).
The ratio shows Flower's framing overhead (and any tensor the run sends that the analytic
count leaves out).

    python benchmarks/comm_bytes.py docs/results/paper/runs/ner-{layerskip,fedavg,lora}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import publish

WIRE_BYTES_PER_VALUE = {"none": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0 + 4.0 / 256}
"""Bytes per exchanged value for each ``compression`` (int8: code + its share of a block scale)."""


def num_labels(run: Path, config: dict[str, Any]) -> int:
    """Labels of the run's task head (from its export, else from the data it read)."""
    manifest = run / "model" / "fedskip.json"
    if manifest.is_file():
        return len(json.loads(manifest.read_text())["labels"])
    from fedskip.config import Config
    from fedskip.pipeline import prepare

    return len(prepare(Config.from_mapping(config)).label_list)


def analytic(config: dict[str, Any], labels: int, wire: str = "") -> dict[str, Any]:
    """``fedskip comm``'s count for the run's plan; full fine-tuning (FedAvg, or k = every
    block without LoRA, as :func:`fedskip.trainability.is_full` decides) exchanges every
    parameter. ``wire``: the scheme the run used (its summary's ``wire_compression``), else
    what its config resolves to today (``auto`` has changed meaning)."""
    from fedskip.config import Config
    from fedskip.models.comm import communication_report
    from fedskip.models.layers import discover_layers
    from fedskip.models.loading import build_meta_model
    from fedskip.trainability import is_full

    cfg = Config.from_mapping(config)
    model = build_meta_model(cfg.model, task=cfg.task, num_labels=labels)
    stack = discover_layers(model)
    lora = cfg.method == "lora"
    report = communication_report(
        model,
        layers=stack.num_blocks if lora else cfg.layers,
        strategy="top" if lora else cfg.layer_strategy,
        lora_rank=(cfg.lora_rank or 8) if lora else cfg.lora_rank,
        lora_freeze_a=cfg.lora_freeze_a,
        train_final_norm=cfg.train_final_norm,
    )
    params = report["trainable_params"]
    if is_full(cfg, stack):
        params = report["full_params"]
    scheme = wire or cfg.wire_compression
    width = WIRE_BYTES_PER_VALUE[scheme]
    return {
        **report,
        "trainable_params": params,
        "compression": scheme,
        "bytes_per_round_up": round(params * width),
        "bytes_per_round_down": round(params * width),
    }


def measure(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("clients") and r.get("status", "ok") == "ok"]
    if not rows:
        raise SystemExit(f"{run}: no federated rounds with clients in metrics.jsonl")
    up = [r["bytes_up"] / max(r.get("replies_ok") or len(r["clients"]), 1) for r in rows]
    down = [r["bytes_down"] / len(r["clients"]) for r in rows]
    summary = run / "summary.json"
    wire = json.loads(summary.read_text()).get("wire_compression", "") if summary.is_file() else ""
    report = analytic(config, num_labels(run, config), wire)
    return {
        "run": run.name,
        "method": config["method"],
        "k": config["layers"],
        "lora_rank": config.get("lora-rank", 0),
        "compression": report["compression"],
        "measured_up": sum(up) / len(up),
        "measured_down": sum(down) / len(down),
        "analytic_up": report["bytes_per_round_up"],
        "analytic_down": report["bytes_per_round_down"],
        "trainable_params": report["trainable_params"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="federated run directories")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = [measure(run) for run in args.runs]
    rows = [
        {
            "run": f"`{r['run']}`",
            "method": r["method"],
            "compression": r["compression"],
            "analytic up (bytes)": f"{r['analytic_up']:,}",
            "measured up (bytes)": f"{r['measured_up']:,.0f}",
            "measured / analytic up": f"{r['measured_up'] / r['analytic_up']:.4f}",
            "measured / analytic down": f"{r['measured_down'] / r['analytic_down']:.4f}",
        }
        for r in results
    ]
    publish(rows, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
