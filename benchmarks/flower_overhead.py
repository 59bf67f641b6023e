"""Flower round overhead: ``fedskip run`` on the Simulation Engine versus the same client work
called in-process, side by side in one invocation.

Both sides do the same rounds: every client runs :func:`fedskip.federation.client.train_round` (the
function the ClientApp calls) from the same global tensors, the updates are averaged with
:func:`fedskip.federation.aggregation.weighted_mean_per_key`, and the global model is scored on the
global test set (with the same activation cache as the server's evaluation). The in-process
side does only that, sequentially with ``--threads`` threads; the Flower side adds what a real
run has: Ray start-up, messages and their (de)serialization, reply validation, clients in
parallel with one thread each (unless ``--flower-parallel``), per-round checkpoints, the final
model export. Each side runs in a fresh process.

    python benchmarks/flower_overhead.py --rounds 3 --synth-docs 20 --max-length 64

Equal cores: ``--flower-parallel 1 --threads 1`` makes Flower train one client at a time with one
torch thread, as the in-process loop does, so the difference is Flower's own cost (messages,
validation, scheduling, checkpoints) and nothing else. ``--repeat N`` alternates the two sides
N times (in-process, Flower, in-process, ...) so a change in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    TreeMemorySampler,
    command_line,
    layerskip_config,
    markdown,
    run_worker,
    write_json,
)


def in_process(cfg: Any, threads: int) -> dict[str, Any]:
    """The rounds without Flower; returns total and per-round seconds and the final metric."""
    import numpy as np
    import torch

    from fedskip.federation.aggregation import merge_state, weighted_mean_per_key
    from fedskip.federation.client import ClientData, ClientRuntime, train_round
    from fedskip.federation.planning import LayerPlanner
    from fedskip.models.freeze import load_trainable_state
    from fedskip.pipeline import activation_cache, collator, encode
    from fedskip.train.engine import evaluate
    from fedskip.train.metrics import primary_metric

    started = time.perf_counter()
    torch.set_num_threads(threads)
    runtime = ClientRuntime(cfg)
    prepared = runtime.prepared
    clients = [
        ClientData(i, prepared.client_names[i], prepared.client_train[i], prepared.client_test[i])
        for i in range(prepared.num_clients)
    ]
    planner = LayerPlanner(cfg, runtime.base)
    params = dict(runtime.base.model.named_parameters())
    state = {k: params[k].detach().numpy().copy() for k in planner.candidate_keys()}
    server = runtime.fresh()
    test_set = encode(prepared.global_test, server.tokenizer, prepared, cfg)
    rounds, metric = [], None
    for server_round in range(1, cfg.rounds + 1):
        begin = time.perf_counter()
        plan = planner.plan(server_round, None)
        tensors = {k: torch.from_numpy(state[k]) for k in plan.train_keys}
        updates = []
        for data in clients:
            result = train_round(
                runtime, data, tensors, layers=plan.layers, server_round=server_round
            )
            updates.append(({k: v.numpy() for k, v in result.state.items()}, result.num_examples))
        state = merge_state(state, weighted_mean_per_key(updates))
        load_trainable_state(
            server.model,
            {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
            strict_keys=False,
        )
        scores = evaluate(
            server.model,
            test_set,
            collator(server.tokenizer, prepared),
            batch_size=cfg.batch_size,
            device="cpu",
            cache=activation_cache(cfg, server.stack, server.tokenizer),
        )
        metric = scores.get(primary_metric(prepared.task_info))
        rounds.append(time.perf_counter() - begin)
    return {"total_s": time.perf_counter() - started, "round_s": rounds, "metric": metric}


def with_flower(cfg: Any) -> dict[str, Any]:
    from fedskip.runs.simulation import simulate

    started = time.perf_counter()
    summary = simulate(cfg)
    total = time.perf_counter() - started
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    return {
        "total_s": total,
        "round_s": [r["seconds"] for r in rows],
        "metric": summary.get("final_metric"),
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    # CPU time only, once a second: a memory sampler would cost the Flower side (more and larger
    # processes) more than the in-process side
    with tempfile.TemporaryDirectory() as tmp, TreeMemorySampler(1.0, memory=False) as tree:
        cfg = layerskip_config(args, tmp, compression="none")
        result = with_flower(cfg) if args.side == "flower" else in_process(cfg, args.threads)
    return {**result, "cpu_s": tree.cpu_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synth-docs", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--flower-parallel",
        type=int,
        default=0,
        help="clients Flower trains at once (0: as many as the machine allows)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", default="inprocess", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    shared = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("json", "worker", "side", "flower_parallel", "repeat")
    ]
    flower_env = {}
    if args.flower_parallel:
        flower_env = {
            "FEDSKIP_PARALLEL_CLIENTS": str(args.flower_parallel),
            "FEDSKIP_CLIENT_THREADS": str(args.threads),
        }
    runs: dict[str, list[dict[str, Any]]] = {"inprocess": [], "flower": []}
    for _ in range(args.repeat):
        runs["inprocess"].append(run_worker(Path(__file__), [*shared, "--side", "inprocess"]))
        runs["flower"].append(
            run_worker(Path(__file__), [*shared, "--side", "flower"], env=flower_env)
        )
    rows = []
    for name, side in (("in-process", "inprocess"), ("Flower simulation", "flower")):
        for i, r in enumerate(runs[side], 1):
            mean_round = sum(r["round_s"]) / len(r["round_s"])
            rows.append(
                {
                    "harness": name,
                    "repeat": str(i),
                    "total (s)": f"{r['total_s']:.1f}",
                    "mean round (s)": f"{mean_round:.1f}",
                    "outside rounds (s)": f"{r['total_s'] - sum(r['round_s']):.1f}",
                    "core-seconds": f"{r['cpu_s']:.0f}",
                    "final F1": f"{r['metric']:.3f}" if isinstance(r["metric"], float) else "–",
                }
            )
    local_round = sum(sum(r["round_s"]) for r in runs["inprocess"])
    flower_round = sum(sum(r["round_s"]) for r in runs["flower"])
    local_total = sum(r["total_s"] for r in runs["inprocess"])
    flower_total = sum(r["total_s"] for r in runs["flower"])
    n_rounds = sum(len(r["round_s"]) for r in runs["inprocess"])
    local_cpu = sum(r["cpu_s"] for r in runs["inprocess"])
    flower_cpu = sum(r["cpu_s"] for r in runs["flower"])
    print(f"`{command_line()}`\n")
    print(markdown(rows, list(rows[0])))
    print(
        f"\nFlower / in-process (all repeats): total {flower_total / local_total:.2f}x, "
        f"per round {flower_round / local_round:.2f}x "
        f"({(flower_round - local_round) / n_rounds:+.1f} s per round); "
        f"core-seconds {flower_cpu / local_cpu:.2f}x"
    )
    write_json(
        args.json,
        {"command": command_line(), "inprocess": runs["inprocess"], "flower": runs["flower"]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
