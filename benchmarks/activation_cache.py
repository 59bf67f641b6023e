"""Local epoch and evaluation time with the frozen-prefix activation cache on and off.

One invocation measures every variant side by side in one process, on the real examples of one
site of the default synthetic corpus (real sentence lengths, the training engine every method
uses): full fine-tuning, and layer skipping with the top k blocks for each k, cache ``off``
(today's layer skipping: the frozen prefix runs forward every epoch) and ``auto``. Per variant:
the first epoch (with the cache it also fills the cache), a later epoch, one evaluation pass
over the site's test examples after the cache is filled (``eval_s``) and the cache's size.
Variants run round robin ``--repeat`` times and the median of each figure is reported; ratios
are against ``k`` off in the same invocation.

    python benchmarks/activation_cache.py --model minilm --layers 1,2,3
    python benchmarks/activation_cache.py --model llama-tiny --layers 1,2,3
    python benchmarks/activation_cache.py --model llama-3.2-1b --model-init random \
        --device cuda --dtype bf16 --layers 1,4,8 --examples 64   # benchmarks/gpu_check.sh

Each variant also reports its optimizer step time (the later epoch over its steps) and, on CUDA,
its peak memory (``torch.cuda.max_memory_allocated()`` from the model's build to the end of the
evaluation; CPU: not measured here, see ``step_time.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from common import publish


def load(model_name: str, examples: int, **settings: Any) -> tuple[Any, ...]:
    """(config, prepared, train features, test encoding, collate) for site 0 of the corpus;
    ``settings``: config keys (snake_case) such as device, dtype, model_init."""
    from fedskip.config import Config
    from fedskip.pipeline import collator, encode, prepare
    from fedskip.trainability import load_bundle

    cfg = Config(model=model_name, quiet=True, **settings)
    prepared = prepare(cfg)
    tokenizer = load_bundle(cfg, prepared).tokenizer
    train = encode(prepared.client_train[0], tokenizer, prepared, cfg).features[:examples]
    test = encode(prepared.client_test[0], tokenizer, prepared, cfg)
    return cfg, prepared, train, test, collator(tokenizer, prepared)


def measure_variant(
    cfg: Any, prepared: Any, train_set: Any, test: Any, collate: Any, k: int | None, cache: str
) -> dict[str, float]:
    """Seconds of a first and a later epoch, of a step and of an evaluation pass; cache MiB;
    CUDA peak MiB."""
    import torch

    from fedskip.pipeline import activation_cache
    from fedskip.train import activation_store as st
    from fedskip.train.engine import TrainSettings, evaluate, train
    from fedskip.trainability import build_trainable

    st.STORE.clear()
    device = cfg.device
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run_cfg = cfg.replace(
        method="fedavg" if k is None else "layerskip",
        layers=k or 1,
        activation_cache=cache,
        lr=5e-5 if k is None else cfg.lr,
    )
    bundle, _ = build_trainable(run_cfg, prepared)
    model, tokenizer, stack = bundle.model, bundle.tokenizer, bundle.stack
    hook = activation_cache(run_cfg, stack, tokenizer)
    settings = TrainSettings.from_config(run_cfg)
    times, steps = [], 1
    for _ in range(2):
        began = time.perf_counter()
        result = train(model, train_set, collate, settings, epochs=1, device=device, cache=hook)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
        steps = max(result.steps, 1)
    evaluate(model, test, collate, batch_size=cfg.batch_size, device=device, cache=hook)  # fills
    began = time.perf_counter()
    evaluate(model, test, collate, batch_size=cfg.batch_size, device=device, cache=hook)
    if cuda:
        torch.cuda.synchronize()
    eval_s = time.perf_counter() - began
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    del model, bundle
    return {
        "epoch1_s": times[0],
        "epoch2_s": times[1],
        "step_s": times[1] / steps,
        "eval_s": eval_s,
        "cache_mb": st.STORE.memory_bytes / 2**20,
        "cuda_peak_mb": peak,
    }


def rows_of(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    full = results.get("full")
    for name, r in results.items():
        k = name.split()[0]
        off = results.get(f"{k} off") if name != "full" else None
        row = {
            "variant": name if name == "full" else f"k={k} cache {name.split()[1]}",
            "first epoch s": f"{r['epoch1_s']:.1f}",
            "later epoch s": f"{r['epoch2_s']:.1f}",
            "step s": f"{r['step_s']:.3f}",
            "eval s": f"{r['eval_s']:.2f}",
            "cache MB": f"{r['cache_mb']:.0f}",
            "CUDA peak MiB": ""
            if r["cuda_peak_mb"] != r["cuda_peak_mb"]
            else f"{r['cuda_peak_mb']:.0f}",
            "later epoch vs k off": ""
            if off is None
            else f"{off['epoch2_s'] / r['epoch2_s']:.2f}x",
            "later epoch vs full": ""
            if full is None
            else f"{full['epoch2_s'] / r['epoch2_s']:.2f}x",
            "eval vs k off": "" if off is None else f"{off['eval_s'] / r['eval_s']:.2f}x",
        }
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--layers", default="1,2,3", help="comma-separated k values")
    parser.add_argument("--examples", type=int, default=1500, help="training examples used")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-full", action="store_true", help="skip full fine-tuning")
    parser.add_argument("--synth-docs", type=int, default=60, help="notes per synthetic site")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument(
        "--model-init", default="pretrained", choices=("pretrained", "random"), help="weights"
    )
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    layers = [int(k) for k in args.layers.split(",") if k]
    cfg, prepared, train_set, test, collate = load(
        args.model,
        args.examples,
        device=args.device,
        dtype=args.dtype,
        model_init=args.model_init,
        synth_docs=args.synth_docs,
    )
    variants: list[tuple[str, int | None, str]] = [] if args.no_full else [("full", None, "off")]
    for k in layers:
        variants += [(f"{k} off", k, "off"), (f"{k} auto", k, "auto")]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for _ in range(args.repeat):
        for name, k, cache in variants:
            runs[name].append(measure_variant(cfg, prepared, train_set, test, collate, k, cache))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    rows = rows_of(results)
    print(
        f"{args.model}: {len(train_set)} training examples "
        f"({sum(len(f['input_ids']) for f in train_set)} tokens), "
        f"{len(test.features)} test examples, batch {cfg.batch_size}, "
        f"{args.threads} thread(s), {args.device}, {args.dtype}, {args.model_init} weights\n"
    )
    publish(rows, {"runs": runs, "median": results}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
