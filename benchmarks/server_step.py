"""MIRA's server step alone against the number of clients K: one round's aggregate on a (K × P) state
of random adapters (P = 921,600: SmolLM2-135M's r = 16 q/v adapter, as in the paper presets), a
random task graph and 10 % of the clients replying; prints the seconds of one step (after a warm-up)
for each neighbour rule, and what the rule's product costs done dense and sparse; first, what writing
that state as a checkpoint costs in seconds and in memory above the state itself.

    python benchmarks/server_step.py --clients 200
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import device_name  # noqa: E402
from mira.algorithms import Mira  # noqa: E402
from mira.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from mira.graph import laplacian, normalize_graph, random_graph  # noqa: E402


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
    peak_gib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # noqa: E731 (Linux: KiB)
    before = peak_gib()
    with tempfile.TemporaryDirectory() as folder:
        begin = time.perf_counter()
        save_checkpoint(Path(folder), Checkpoint(1, thetas, {}))
        print(f"checkpoint of the {thetas.numel() * 4 / 2**30:.2f} GiB state: {time.perf_counter() - begin:.1f} s, "
              f"peak RSS {before:.2f} -> {peak_gib():.2f} GiB")
    for neighbours in ("sampled", "all"):
        rule = Mira(adjacency, 0.4, neighbours)
        rule.aggregate(thetas, replies, {c: 1 for c in sampled})  # warm-up
        begin = time.perf_counter()
        rule.aggregate(thetas, replies, {c: 1 for c in sampled})
        print(f"neighbours = {neighbours!r}: {time.perf_counter() - begin:.3f} s per server step")
    # The same product of the 'all' rule (sampled rows of I − step·L with every adapter), dense and
    # sparse: what laplacian_step's choice between them rests on.
    mixing = -0.4 * laplacian(adjacency)[sampled]
    mixing[torch.arange(len(sampled)), sampled] += 1
    seconds = {}
    for kind, product in (("dense", lambda: mixing @ thetas),
                          ("sparse", lambda: torch.sparse.mm(mixing.to_sparse(), thetas))):
        product()
        begin = time.perf_counter()
        product()
        seconds[kind] = time.perf_counter() - begin
    nonzero = int(mixing.count_nonzero())
    per_value = (seconds["sparse"] / nonzero) / (seconds["dense"] / mixing.numel())
    print(f"product of {len(sampled)} x {k} mixing rows ({nonzero / mixing.numel():.0%} non-zero) with the adapters: "
          f"dense {seconds['dense']:.3f} s, sparse {seconds['sparse']:.3f} s; a sparse non-zero costs "
          f"{per_value:.1f}x a dense entry")


if __name__ == "__main__":
    main()
