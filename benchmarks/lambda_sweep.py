"""MIRA's λ sweep: the trade-off between local fit (λ = 0 is local training) and agreement with
neighbours (larger λ pulls adapters together; lower global loss). Same clients, initial adapters and
batches for every λ; η fixed; graph = the synthetic suite's true families. Prints a Markdown table.

    python benchmarks/lambda_sweep.py --model tiny-random --set train.lr=0.05 --seeds 0,1,2   # minutes
    python benchmarks/lambda_sweep.py                                                         # SmolLM2: hours on CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile

from mira.client import build_workspace
from mira.config import load_config
from mira.simulation import run

LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model: smollm2-135m-instruct (embedded), tiny-random, a local directory, "
                             "a .gguf file or a Hub id")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides, as for mira run --set")
    args = parser.parse_args()
    results: dict[float, list[tuple[float, float]]] = {lam: [] for lam in LAMBDAS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            base = load_config(None, [f"model.name='{args.model}'", f"out_dir='{tmp}'", f"seed={seed}",
                                      "mira.graph.kind=ground_truth", "federation.sample_fraction=0.5", "eval.eval_every=6",
                                      "eval.generate_per_client=0", "train.local_steps=5", "train.batch_size=8",
                                      "data.val_per_client=16", *args.overrides])
            ws = build_workspace(base)
            for lam in LAMBDAS:
                cfg = dataclasses.replace(base, name=f"lam{lam}-s{seed}",
                                          federation=dataclasses.replace(base.federation, lam=lam))
                last = run(cfg, progress=False, ws=dataclasses.replace(ws, cfg=cfg)).history[-1]
                results[lam].append((last["mean_local_loss"], last["mean_global_loss"]))
    eta = base.mira.eta
    print(f"model {args.model}, η = {eta}, seeds {args.seeds}, true family graph (normalised), "
          f"{base.federation.rounds} rounds x {base.train.local_steps} local steps, half the clients per round\n")
    print("| λ | η·λ | mean local loss | mean global loss |\n|---|---|---|---|")
    for lam, values in results.items():
        local, glob = zip(*values)
        def spread(xs):
            return f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""
        print(f"| {lam:g} | {eta * lam:g} | {statistics.fmean(local):.3f}{spread(local)} | "
              f"{statistics.fmean(glob):.3f}{spread(glob)} |")


if __name__ == "__main__":
    main()
