"""Per-seed numbers of a finished comparison (a `mira compare` folder, or the archived sub-runs of a
published one): each variant's mean local test loss, final and validation-selected, for every seed,
and the training seconds its sub-runs recorded (`train_seconds` of every round; evaluation not
included). Paired by seed, since every variant of a seed shares its clients, initial adapters and
batches.

    python benchmarks/per_seed.py benchmarks/results/paper-dolly-reduced/runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mira.reporting import load_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", type=Path, help="folder of the sub-runs <variant>-s<seed>")
    args = parser.parse_args()
    variants, _ = load_comparison(args.comparison)
    seeds = variants[0].seeds
    print("| variant | " + " | ".join(f"seed {s}: final / selected" for s in seeds) + " | training, each seed (all seeds) |")
    print("|---|" + "---|" * (len(seeds) + 1))
    total = 0.0
    for variant in variants:
        cells, minutes = [], []
        for history in variant.histories:
            last = history[-1]
            selected = last.get("selected", {}).get("mean_local_loss")
            cells.append(f"{last['mean_local_loss']:.3f} / " + (f"{selected:.3f}" if selected is not None else "—"))
            minutes.append(sum(r.get("train_seconds", 0.0) for r in history) / 60)
        total += sum(minutes)
        print(f"| {variant.label} | " + " | ".join(cells) + " | " + " / ".join(f"{m:.1f}" for m in minutes)
              + f" min ({sum(minutes):.1f}) |")
    print(f"\ntraining of all {len(variants) * len(seeds)} sub-runs: {total / 60:.1f} h (single-threaded "
          "sub-runs, as recorded; evaluation not included)")


if __name__ == "__main__":
    main()
