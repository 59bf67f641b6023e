"""Simulation scaling: wall time and peak memory of ``fedskip run`` for 10, 50 and 100 clients.

Each client count runs in a fresh process: the synthetic corpus pooled and split IID into N
clients, layer skipping (top-k), every client trained in every round. Peak memory is the
highest total proportional set size (PSS) of the driver and all its descendants — Ray's GCS,
raylet and the ClientApp workers — sampled every 0.25 s (see ``benchmarks/common.py``).

    python benchmarks/sim_scaling.py --clients 10,50,100 --rounds 1 --synth-docs 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MIB, TreeMemorySampler, layerskip_config, publish, run_worker


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from fedskip.runs.simulation import simulate

    with tempfile.TemporaryDirectory() as tmp:
        cfg = layerskip_config(  # fp32 wire, as BENCHMARKS.md §4 was measured
            args, tmp, partition="iid", clients=args.num_clients, compression="none"
        )
        with TreeMemorySampler() as memory:
            started = time.perf_counter()
            summary = simulate(cfg)
            seconds = time.perf_counter() - started
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return {
        "clients": args.num_clients,
        "total_s": seconds,
        "round_s": [r["seconds"] for r in rows],
        "replies_ok": [r["replies_ok"] for r in rows],
        "bytes": summary["bytes"]["total"],
        "peak_pss": memory.peak_pss,
        "peak_rss_sum": memory.peak_rss,
        "peak_processes": memory.peak_processes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,50,100")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--synth-docs", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-clients", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    shared = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("model", "layers", "rounds", "synth_docs", "max_length", "batch_size")
    ]
    results = [
        run_worker(Path(__file__), [*shared, f"--num-clients={n}"])
        for n in (int(c) for c in args.clients.split(","))
    ]
    base = results[0]
    rows = [
        {
            "clients": r["clients"],
            "wall (s)": f"{r['total_s']:.1f}",
            "mean round (s)": f"{sum(r['round_s']) / len(r['round_s']):.1f}",
            "per client-round (s)": f"{sum(r['round_s']) / (len(r['round_s']) * r['clients']):.2f}",
            "time vs first": f"{r['total_s'] / base['total_s']:.2f}x",
            "peak PSS (MiB)": f"{r['peak_pss'] / MIB:.0f}",
            "memory vs first": f"{r['peak_pss'] / base['peak_pss']:.2f}x",
            "processes": r["peak_processes"],
            "replies ok": sum(r["replies_ok"]),
        }
        for r in results
    ]
    publish(rows, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
