"""Can the server recover the task graph from the adapters it receives? Every client of the
synthetic suite (9 tasks, 3 families) trains R local steps from the shared initial adapter once
(round 1, no aggregation); the learned-graph estimator (cosine similarity of the updates θ_k − θ_0,
k nearest neighbours) is compared with the true family graph.

    python benchmarks/graph_recovery.py                       # SmolLM2-135M, ~3 minutes on 2 cores
    python benchmarks/graph_recovery.py --model tiny-random   # seconds
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from mira.client import build_workspace
from mira.config import load_config
from mira.graph import edge_precision_recall, family_graph, similarity_graph
from mira.simulation import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model: smollm2-135m-instruct (embedded), tiny-random, a local directory, "
                             "a .gguf file or a Hub id")
    parser.add_argument("--local-steps", type=int, default=5, help="R, the local steps behind each update")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, initial adapter and batches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"model.name='{args.model}'", f"out_dir='{tmp}'", "federation.algorithm=local",
                                 "train.batch_size=8", "data.val_per_client=16",
                                 "federation.sample_fraction=1.0", "federation.rounds=1",
                                 f"train.local_steps={args.local_steps}", f"seed={args.seed}",
                                 "eval.generate_per_client=0", "eval.global_loss=false"])
        ws = build_workspace(cfg)
        thetas = run(cfg, progress=False, ws=ws).thetas
    truth = family_graph([c.family for c in ws.clients])
    layout, initial = ws.slot.layout, ws.initial_theta
    a_mask = layout.lora_a_mask()
    print(f"{args.model}, {len(ws.clients)} clients in 3 families, {args.local_steps} local steps, seed {args.seed}")
    print("update used    knn  precision  recall")
    for label, mask in (("A and B", torch.ones_like(a_mask)), ("B only", ~a_mask), ("A only", a_mask)):
        for knn in (1, 2):
            graph = similarity_graph(thetas[:, mask], initial[mask], knn, 0.0)
            precision, recall = edge_precision_recall(graph, truth)
            print(f"{label:13s} {knn:4d}  {precision:9.2f}  {recall:6.2f}")


if __name__ == "__main__":
    main()
