"""Change in each client's local test loss from round 0 to the last round, grouped by how many rounds
the client was sampled in, per variant of a finished comparison (`mira compare` folder). Under partial
participation this separates what an algorithm gives the clients it trains from what it gives those
it rarely or never trains (MIRA moves only sampled clients' adapters; FedAvg-style methods move all).

    python benchmarks/by_times_sampled.py runs/benchmarks/paper-ni-reduced
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from mira.results import COMPARISON_JSON, read_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", type=Path)
    args = parser.parse_args()
    spec = json.loads((args.comparison / COMPARISON_JSON).read_text())
    changes = defaultdict(lambda: defaultdict(list))  # variant -> times sampled -> loss changes
    for variant in spec["variants"]:
        for seed in spec["seeds"]:
            history = read_history(args.comparison / f"{variant}-s{seed}")
            times = Counter(name for r in history for name in r.get("sampled", []))
            evaluated = [r["local_loss"] for r in history if "local_loss" in r]
            for name, final in evaluated[-1].items():
                changes[variant][times[name]].append(final - evaluated[0][name])
    counts = sorted({n for by_times in changes.values() for n in by_times})
    clients = {n: len(next(iter(changes.values()))[n]) // len(spec["seeds"]) for n in counts}
    print("Mean change in local test loss, round 0 to the last round (negative is better), by times sampled;")
    print(f"seeds {spec['seeds']}.\n")
    print("| variant | " + " | ".join(f"{n}× ({clients[n]} clients)" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for variant, by_times in changes.items():
        print(f"| {variant} | " + " | ".join(f"{statistics.fmean(by_times[n]):+.3f}" if by_times[n] else "—"
                                            for n in counts) + " |")


if __name__ == "__main__":
    main()
