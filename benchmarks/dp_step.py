"""One DP-SGD step against one plain step at the same batch: time and peak memory, per-unit
clipping by Opacus' per-example gradients (``hooks``, the reference) and by ghost norms with
book-keeping (``fast``, fedskip's default).

Every variant runs in its own fresh process (peak memory, see ``benchmarks/common.py``), round
robin ``--repeat`` times; the median process is reported. A process builds the model (MiniLM
pretrained by default), makes the chosen tensors trainable — top-k blocks + head (``1``, ``2``,
``4``, ``all`` = every block, embeddings frozen), LoRA rank 8 in every block (``lora``) or the
same with A frozen (``lora-fa``) — and trains on ``--batch-size × --steps`` examples of
``--seq-len`` random tokens with the shared training engine (AdamW) for one epoch:

- ``plain``: ``--steps`` steps of ``--batch-size`` examples;
- ``hooks`` / ``fast``: DP-SGD (σ = 1, C = 1, every example its own unit) with an expected
  ``--batch-size`` units per step: Poisson sampling at q = 1 / ``--steps`` over the same
  examples, so ``--steps`` steps of ``--batch-size`` examples on average.

One warm-up epoch precedes the timed one; a step's time is the timed epoch over its steps.
Ratios are against ``plain`` of the same trainable set in the same invocation. With
``--cache`` the top-k variants also run ``plain+cache`` and ``fast+cache``: the frozen-prefix
activation cache filled in the warm-up epoch, so the timed epoch is a second epoch.

    python benchmarks/dp_step.py --variants 1,2,4,all,lora,lora-fa --batch-size 32 \\
        --seq-len 64 --steps 4 --repeat 3 --cache
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from common import MIB, current_rss_bytes, peak_rss_bytes, publish, run_worker
from step_time import build, collate, random_examples

CLIPPINGS = ("plain", "hooks", "fast")
CACHED = ("plain+cache", "fast+cache")
"""With ``--cache``, the layer-skipping variants also run with the frozen-prefix activation
cache: the warm-up epoch fills it, the timed (second) epoch starts at the lowest trained block."""


def make_trainable(model: Any, which: str) -> Any:
    """Freeze all but the tensors of variant ``which`` (see the module docstring)."""
    from fedskip.models.freeze import apply_layer_skip
    from fedskip.models.layers import discover_layers
    from fedskip.models.lora import apply_lora_to_selected

    stack = discover_layers(model)
    blocks = list(range(stack.num_blocks))
    if which.startswith("lora"):
        model, _ = apply_lora_to_selected(
            model, stack, blocks, rank=8, alpha=16.0, freeze_a=which == "lora-fa"
        )
        return model
    k = stack.num_blocks if which == "all" else int(which)
    apply_layer_skip(model, stack, blocks[-k:])
    return model


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from fedskip.models.freeze import count_parameters
    from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings
    from fedskip.train.engine import TrainSettings, train

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    trainable, clipping = args.variant.split(":")
    model = build(args.model, random_weights=args.random_weights, dtype="fp32", device="cpu")
    model = make_trainable(model, trainable)
    _, n_trainable = count_parameters(model)
    loaded_rss = current_rss_bytes()
    data = random_examples(int(model.config.vocab_size), args.seq_len, args.batch_size * args.steps)

    settings = TrainSettings(lr=1e-5, warmup_ratio=0.0, batch_size=args.batch_size, quiet=True)

    mode, _, cached = clipping.partition("+")
    cache = None
    if cached:
        from fedskip.models.layers import discover_layers
        from fedskip.train.prefix_cache import ActivationCache

        cache = ActivationCache(discover_layers(model), tokenization=("dp_step", args.seq_len))

    def epoch() -> Any:
        privacy = None
        if mode != "plain":
            privacy = DPSGD(DPSGDSettings(grad_sample_mode=mode, noise_seed=0))
        return train(
            model, data, collate, settings, epochs=1, device="cpu", privacy=privacy, cache=cache
        )

    epoch()  # warm-up
    result = epoch()
    return {
        "variant": args.variant,
        "trainable_params": n_trainable,
        "step_s": result.seconds / max(result.steps, 1),
        "steps": result.steps,
        "peak_rss": peak_rss_bytes(),
        "loaded_rss": loaded_rss,
    }


def measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every (trainable set, clipping) pair, round robin over fresh worker processes."""
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if args.json:
        passthrough = [a for a in passthrough if a != args.json]
    variants = []
    for t in args.variants.split(","):
        cached = CACHED if args.cache and not t.startswith("lora") and t != "all" else ()
        variants += [f"{t}:{c}" for c in (*CLIPPINGS, *cached)]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for variant in variants:
            run = run_worker(Path(__file__), [*passthrough, "--variant", variant])
            runs[variant].append(run)
            print(variant, f"{run['step_s']:.3f} s", file=sys.stderr, flush=True)
    results = {}
    for variant, rs in runs.items():
        chosen = dict(sorted(rs, key=lambda r: r["step_s"])[len(rs) // 2])
        chosen["all_step_s"] = [r["step_s"] for r in rs]
        results[variant] = chosen
    return results


def rows_of(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for variant, r in results.items():
        trainable, clipping = variant.split(":")
        plain = results[f"{trainable}:plain"]
        mem, plain_mem = (x["peak_rss"] - x["loaded_rss"] for x in (r, plain))
        rows.append(
            {
                "trainable": trainable,
                "params": f"{r['trainable_params']:,}",
                "step": clipping,
                "step (s)": f"{r['step_s']:.3f}",
                "range (s)": f"{min(r['all_step_s']):.3f}–{max(r['all_step_s']):.3f}",
                "vs plain": f"{r['step_s'] / plain['step_s']:.2f}x",
                "training memory (MiB)": f"{mem / MIB:.0f}",
                "memory vs plain": f"{mem / max(plain_mem, 1):.2f}",
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--variants", default="1,2,4,all,lora,lora-fa")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", action="store_true", help="also time k with the cache")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    results = measure(args)
    publish(rows_of(results), results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
