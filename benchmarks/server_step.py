"""MIRA's server step alone against the number of clients K: one round's aggregate on a (K × P) state
of random adapters (P = 921,600: SmolLM2-135M's r = 16 q/v adapter, as in the paper presets), a
random task graph and 10 % of the clients replying; prints the seconds of one step (after a warm-up)
for each neighbour rule.

    python benchmarks/server_step.py --clients 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import device_name  # noqa: E402

from mira.algorithms import Mira  # noqa: E402
from mira.graph import normalize_graph, random_graph  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="K")
    parser.add_argument("--values", type=int, default=921_600, help="P, adapter values per client")
    args = parser.parse_args()
    k, p = args.clients, args.values
    torch.manual_seed(0)
    thetas = torch.randn(k, p)
    adjacency = normalize_graph(random_graph(k, 0.5, 0.0, 1.0, seed=0))
    sampled = list(range(0, k, 10))
    replies = {c: {"adapter": thetas[c] + 0.01} for c in sampled}
    print(f"K = {k}, P = {p:,}, {len(sampled)} replies, random graph; {device_name()}")
    for neighbours in ("sampled", "all"):
        rule = Mira(adjacency, 0.4, neighbours)
        rule.aggregate(thetas, replies, {c: 1 for c in sampled})  # warm-up
        begin = time.perf_counter()
        rule.aggregate(thetas, replies, {c: 1 for c in sampled})
        print(f"neighbours = {neighbours!r}: {time.perf_counter() - begin:.3f} s per server step")


if __name__ == "__main__":
    main()
