"""Simulator overhead: time of one MIRA round in the simulator divided by the time of the same number
of bare PEFT training steps on the same batches (target: <= 1.05).

The bare loop is what a user would write for one PEFT model: a fresh AdamW per client, forward,
backward, clip, step. The simulator additionally swaps each client's adapter in and out, samples
clients and applies MIRA's server step. Evaluation is not timed.

    python benchmarks/round_overhead.py                      # embedded SmolLM2-135M, ~3 minutes on 2 cores
    python benchmarks/round_overhead.py --model tiny-random  # seconds; overhead dominates there
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mira.algorithms import build_algorithm
from mira.client import build_workspace
from mira.config import load_config
from mira.data.encode import batch_schedule, collate
from mira.rounds import federated_round, sample_clients
from mira.simulation import InProcess
from mira.train import make_optimizer


def bare_peft_steps(ws, clients: list[int], round_: int) -> None:
    cfg = ws.cfg
    model, params = ws.model, ws.slot.params
    model.train()
    for k in clients:
        optimizer = make_optimizer(params, cfg.train)
        for ids in batch_schedule(len(ws.train_sets[k]), cfg.train.batch_size, cfg.train.local_steps,
                                  cfg.seed, k, round_):
            loss = model(**collate([ws.train_sets[k][i] for i in ids], ws.pad_id)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model.name (default: embedded)")
    parser.add_argument("--clients", type=int, default=3, help="clients sampled per round")
    parser.add_argument("--local-steps", type=int, default=5, help="local steps per client")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each side")
    args = parser.parse_args()

    cfg = load_config(None, [f"model.name='{args.model}'", f"federation.sample_count={args.clients}",
                             f"train.local_steps={args.local_steps}", "train.batch_size=8", "device=cpu"])
    ws = build_workspace(cfg)
    thetas = ws.initial_theta.expand(len(ws.clients), -1).clone()
    names = [c.name for c in ws.clients]

    rule = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)

    def simulator_round(round_):
        federated_round(cfg, rule, InProcess(ws), thetas, round_, names, {})

    simulator_round(1)  # warm-up (allocator, kernels)

    sim, bare = [], []
    for rep in range(args.repeats):
        round_ = rep + 2
        clients = sample_clients(len(ws.clients), 0, args.clients, cfg.seed, round_)
        start = time.perf_counter()
        bare_peft_steps(ws, clients, round_)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        simulator_round(round_)
        sim.append(time.perf_counter() - start)

    steps = args.clients * args.local_steps
    print(f"model {args.model}, {args.clients} clients x {args.local_steps} steps = {steps} steps per round, "
          f"batch {cfg.train.batch_size}, {torch.get_num_threads()} threads")
    print(f"bare PEFT steps : median {statistics.median(bare):.3f} s  ({', '.join(f'{t:.2f}' for t in bare)})")
    print(f"MIRA round (sim): median {statistics.median(sim):.3f} s  ({', '.join(f'{t:.2f}' for t in sim)})")
    print(f"ratio sim/bare  : {statistics.median(sim) / statistics.median(bare):.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
