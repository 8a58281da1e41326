"""Change in each client's local test loss from round 0 to the last round, grouped by how many rounds
the client was sampled in, per variant of a comparison, over the seeds every variant finished. Under
partial participation this separates what an algorithm gives the clients it trains from what it gives
those it rarely or never trains (MIRA moves only sampled clients' adapters; FedAvg-style methods move
all). The folder is a `mira compare` folder or the archived sub-runs of a published comparison:

    python benchmarks/by_times_sampled.py benchmarks/results/paper-ni-reduced/runs
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from mira.reporting import load_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", type=Path, help="folder of the sub-runs <variant>-s<seed>")
    args = parser.parse_args()
    variants, _ = load_comparison(args.comparison)
    seeds = variants[0].seeds
    changes = defaultdict(lambda: defaultdict(list))  # variant -> times sampled -> loss changes
    for variant in variants:
        for history in variant.histories:
            times = Counter(name for r in history for name in r.get("sampled", []))
            evaluated = [r["local_loss"] for r in history if "local_loss" in r]
            for name, final in evaluated[-1].items():
                changes[variant.label][times[name]].append(final - evaluated[0][name])
    counts = sorted({n for by_times in changes.values() for n in by_times})
    per_seed = {n: max(len(by_times[n]) for by_times in changes.values()) / len(seeds) for n in counts}
    print("Mean change in local test loss, round 0 to the last round (negative is better), by times sampled;")
    print(f"seeds {seeds}; a column's clients are counted per seed (the mean over seeds).\n")
    print("| variant | " + " | ".join(f"{n}× ({per_seed[n]:.3g} clients)" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for variant, by_times in changes.items():
        print(f"| {variant} | " + " | ".join(f"{statistics.fmean(by_times[n]):+.3f}" if by_times[n] else "—"
                                            for n in counts) + " |")


if __name__ == "__main__":
    main()
