"""FedKSeed's zeroth-order step on SmolLM2-135M, the two facts its design rests on:

1. the two-point estimate g = (f(θ + εz) − f(θ − εz)) / 2ε at the paper's ε = 5e-4, for a few seeds,
   with the forward passes in float32 and under bfloat16 autocast (one NI client of the verdict's
   budget, the initial LoRA adapter);
2. the time of one seeded Gaussian direction over the LoRA adapter and over the whole model (one
   thread): a stateless client replays up to K = 4096 of them per message.

    python benchmarks/zeroth_order.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verdict  # noqa: E402
from compare_real import DATASETS, device_name  # noqa: E402
from mira.algorithms.fedkseed.algorithm import candidate_seeds, direction  # noqa: E402
from mira.client import LocalTrainer, build_workspace  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.data.encode import collate  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    overrides = [o for o in DATASETS["ni"] if not o.startswith("data.tasks")] + verdict.BUDGET
    overrides += ["federation.algorithm=fedkseed", "data.tasks=" + json.dumps(verdict.NI_TASKS[:1])]
    ws = build_workspace(load_config(None, overrides))
    trainer = LocalTrainer(ws, 0, 1, None)
    batch = collate([trainer.data[i] for i in trainer.batches[0]], ws.pad_id)
    seeds, eps, theta = candidate_seeds(0, 4096), 5e-4, ws.initial_theta
    print(f"{device_name()}; SmolLM2-135M, LoRA adapter of {theta.numel():,} values, {verdict.NI_TASKS[0]}, "
          f"a batch of {len(batch['input_ids'])}, ε = {eps}")
    for autocast in (False, True):
        gradients = []
        for j in range(4):
            z = direction(seeds[j], theta.numel())
            losses = []
            for sign in (1, -1):
                ws.slot.set(theta + sign * eps * z)
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    losses.append(ws.model(**batch).loss.item())
            gradients.append((losses[0] - losses[1]) / (2 * eps))
        print(f"forward passes in {'bfloat16' if autocast else 'float32'}: g = "
              + ", ".join(f"{g:.4f}" for g in gradients))
    full = sum(p.numel() for p in ws.model.parameters())
    for name, numel in (("the LoRA adapter", theta.numel()), ("the whole model", full)):
        direction(seeds[0], numel)  # warm-up
        begin = time.perf_counter()
        direction(seeds[1], numel)
        seconds = time.perf_counter() - begin
        print(f"one direction over {name} ({numel:,} values): {seconds:.3f} s; "
              f"x 4096 seeds: {seconds * 4096 / 60:.1f} min")


if __name__ == "__main__":
    main()
