"""How the in-process simulator's cost grows with the number of clients K: peak memory, the time to
build the workspace, one evaluation of every client, one training round (10 % sampled) and MIRA's
server step alone, at K = 80, 200 and 1000 on SmolLM2-135M with the paper preset's adapter (r = 16
on q and v: 921,600 values per client) and random task graph.

Each K runs in a fresh process (so peak RSS is its own) through `mira.simulation.run`: one round,
evaluated at round 0 and at the end (checkpoints, validation selection and the final adapters are
written as in any run). Data: the synthetic suite split iid into K clients of 8 training, 4
validation and 4 test examples; 2 local steps of batch 8; no text generation (ROUGE would dominate
and is not what scales); the global loss at its default (above eval.global_loss_clients = 16 clients,
a fixed sample of 16: 16² adapter evaluations instead of K²).

    python benchmarks/scale.py [--clients 80,200,1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import device_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

ONE_K = """
import json, resource, sys, time
import torch
from mira.config import load_config
from mira.client import build_workspace
from mira.algorithms import build_algorithm
from mira.rounds import sample_clients
from mira.simulation import run

def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

k, out = int(sys.argv[1]), sys.argv[2]
cfg = load_config("configs/paper_ni.toml", [
    "data.source=synthetic", "data.path=''", "data.families=''", "data.partition=iid", f"data.num_clients={k}",
    "data.train_per_client=8", "data.val_per_client=4", "data.test_per_client=4", "data.clients_per_task=1",
    "federation.rounds=1", "train.local_steps=2", "eval.eval_every=1", "eval.generate_per_client=0", "eval.global_loss=true",
    f"out_dir='{out}'", "name=scale"])
begin = time.perf_counter()
ws = build_workspace(cfg)
built, model_rss = time.perf_counter() - begin, rss_gib()
begin = time.perf_counter()
result = run(cfg, progress=False, ws=ws)
total = time.perf_counter() - begin
round_1 = result.history[1]
algorithm = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
sampled = sample_clients(k, cfg.federation.sample_fraction, 0, cfg.seed, 1)
replies = {c: {"adapter": result.thetas[c] + 0.01} for c in sampled}
algorithm.aggregate(result.thetas, replies, {c: 8 for c in sampled})  # warm-up
begin = time.perf_counter()
algorithm.aggregate(result.thetas, replies, {c: 8 for c in sampled})
step = time.perf_counter() - begin
print(json.dumps({"k": k, "p": ws.initial_theta.numel(), "sampled": len(sampled), "build": built,
                  "model_rss": model_rss, "round": round_1["train_seconds"],
                  "evaluations": total - round_1["train_seconds"], "server_step": step, "peak_rss": rss_gib()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="80,200,1000", help="comma-separated values of K")
    args = parser.parse_args()
    print(f"SmolLM2-135M, r = 16 on q,v, random graph, 10 % sampled, 2 local steps; {device_name()}")
    print("| K | adapter values (K x P) | peak RSS | of which after building | build | one round (train + "
          "server step + checkpoint) | two evaluations of all K | server step alone |")
    print("|---|---|---|---|---|---|---|---|")
    for k in map(int, args.clients.split(",")):
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run([sys.executable, "-c", ONE_K, str(k), out], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"K = {k} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.splitlines()[-1])
        print(f"| {k} | {k * r['p'] * 4 / 2**30:.2f} GiB | {r['peak_rss']:.2f} GiB | {r['model_rss']:.2f} GiB | "
              f"{r['build']:.1f} s | {r['round']:.1f} s ({r['sampled']} clients) | {r['evaluations']:.1f} s | "
              f"{r['server_step']:.3f} s |", flush=True)


if __name__ == "__main__":
    main()
