"""Memory and traffic per client per round for each method (the MIRA paper's Table II columns), on the NI
paper preset's model and batches (SmolLM2-135M, LoRA r = 16 on q_proj and v_proj, batch 8, 96 tokens).

Each method runs in a fresh process: it loads the base model and one client's data, then trains that
client's round once; the peak resident memory during the round above what the process held before it
(sampled every 2 ms from /proc/self/statm) is the client's working memory for training (activations,
gradients, optimiser state, the adapter), beside the base model's weights, which every method shares.
Megabytes per round: what the client receives plus what it sends, as float32 (not its private state:
Local sends nothing).

    python benchmarks/client_memory.py                                   # MIRA, FedIT, FedPTuning, Local
    python benchmarks/client_memory.py --set model.gradient_checkpointing=true
    python benchmarks/client_memory.py --set model.max_length=512 --set model.gradient_checkpointing=true
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import ROOT, SHARED, device_name  # noqa: E402

TASK = "task1601_webquestions_answer_generation"
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def one(algorithm: str, overrides: list[str]) -> dict:
    """In this process: build one client's workspace, then train its round while sampling memory."""
    import torch

    from mira.algorithms import build_algorithm
    from mira.client import build_workspace, train_client
    from mira.config import load_config

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "paper_ni.toml",
                      [f"data.path='{SHARED / 'natural-instructions' / 'tasks'}'", f"data.tasks=['{TASK}']",
                       "model.max_length=96", "train.local_steps=2", "device=cpu",
                       f"federation.algorithm={algorithm}", *overrides])
    ws = build_workspace(cfg)
    algo = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
    thetas = ws.initial_theta[None].clone()
    algo.start(ws.initial_theta)
    sent = algo.send(thetas, 0)
    before, peak, running = resident(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident())
            time.sleep(0.002)
    sampler = threading.Thread(target=sample)
    sampler.start()
    begin = time.perf_counter()
    update = train_client(ws, 0, sent, round_=1)
    seconds = time.perf_counter() - begin
    running[0] = False
    sampler.join()
    size = sum(t.numel() * 4 for message in (sent, update.reply) for key, t in message.items()
               if key not in algo.private)  # a client's private state is its own (Local sends nothing)
    return {"algorithm": algorithm, "base_mib": before / 2**20, "client_mib": (peak[0] - before) / 2**20,
            "traffic_mb": size / 1e6, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", default="mira,fedit,fedptuning,local", help="comma-separated algorithms")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides (e.g. model.gradient_checkpointing=true)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one algorithm in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.overrides)))
        return
    import torch

    torch.set_num_threads(1)  # as each method's process runs
    print(f"{device_name()}, overrides: {args.overrides or 'none'}")
    print("| method | process before the round (MiB) | client's round, peak above it (MiB) | MB per round | round s |")
    print("|---|---|---|---|---|")
    for algorithm in args.algorithms.split(","):
        command = [sys.executable, __file__, "--one", algorithm, *(a for o in args.overrides for a in ("--set", o))]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"| {algorithm} | {r['base_mib']:.0f} | {r['client_mib']:.0f} | {r['traffic_mb']:.2f} | "
              f"{r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
