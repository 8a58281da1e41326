"""How the in-process simulator's cost grows with the number of clients K: peak memory, the time to
build the workspace, one training round (10 % sampled, through the real round loop), a checkpoint,
MIRA's server step alone and evaluation, at K = 80, 200 and 1000 on SmolLM2-135M with the paper
preset's adapter (r = 16 on q and v: 921,600 values per client) and random task graph.

Each K runs in a fresh process (so peak RSS is its own). Data: the 16 NI tasks of ../shared/data
pooled and dealt iid to K clients of 8 training and 4 test examples (no validation split); 2 local
steps of batch 8. Evaluating every client's local test loss is linear in K by nature (one forward
pass per client): it is timed on 20 clients and multiplied by K. The global loss costs n² adapter
evaluations with n = min(K, eval.global_loss_clients) = 16 whatever K (see the README).

    python benchmarks/scale.py [--clients 80,200,1000] [--max-length 256]
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
from mira.algorithms import build_algorithm
from mira.checkpoint import Checkpoint, save_checkpoint
from mira.client import build_workspace, evaluate_client
from mira.config import load_config
from mira.rounds import federated_round
from mira.simulation import InProcess

def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

k, out, max_length = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = load_config("configs/paper_ni.toml", [
    "data.partition=iid", f"data.num_clients={k}", "data.train_per_client=8", "data.val_per_client=0",
    "data.test_per_client=4", "train.local_steps=2", f"model.max_length={max_length}", f"out_dir='{out}'",
    "name=scale"])
begin = time.perf_counter()
ws = build_workspace(cfg)
built, built_rss = time.perf_counter() - begin, rss_gib()
names = [c.name for c in ws.clients]
algorithm = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
thetas = ws.initial_theta.repeat(k, 1)
thetas, record = federated_round(cfg, algorithm, InProcess(ws), thetas, 1, names, {})
cfg.run_dir.mkdir(parents=True)
begin = time.perf_counter()
save_checkpoint(cfg.run_dir, Checkpoint(1, thetas, {}, algorithm.state_dict()))
checkpoint = time.perf_counter() - begin
sampled = [names.index(n) for n in record["sampled"]]
replies = {c: {"adapter": thetas[c] + 0.01} for c in sampled}
begin = time.perf_counter()
algorithm.aggregate(thetas, replies, {c: 8 for c in sampled})
step = time.perf_counter() - begin
begin = time.perf_counter()
for c in range(20):
    evaluate_client(ws, c, thetas[c], False)
per_client = (time.perf_counter() - begin) / 20
print(json.dumps({"k": k, "p": ws.initial_theta.numel(), "sampled": len(sampled), "build": built,
                  "built_rss": built_rss, "round": record["train_seconds"], "checkpoint": checkpoint,
                  "server_step": step, "eval_per_client": per_client, "peak_rss": rss_gib()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="80,200,1000", help="comma-separated values of K")
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per example (the preset's 256; fewer make the training round, "
                             "and only it, cheaper)")
    args = parser.parse_args()
    print(f"SmolLM2-135M, r = 16 on q,v, random graph, 10 % sampled, 2 local steps, model.max_length = "
          f"{args.max_length}; {device_name()}")
    print("| K | adapters (K x P float32) | peak RSS | RSS after building | build | one round (train + server step) "
          "| checkpoint | server step alone | evaluating all K (local test loss) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in map(int, args.clients.split(",")):
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run([sys.executable, "-c", ONE_K, str(k), out, str(args.max_length)], cwd=ROOT,
                                  capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"K = {k} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.splitlines()[-1])
        print(f"| {k} | {k * r['p'] * 4 / 2**30:.2f} GiB | {r['peak_rss']:.2f} GiB | {r['built_rss']:.2f} GiB | "
              f"{r['build']:.1f} s | {r['round']:.1f} s ({r['sampled']} clients) | {r['checkpoint']:.2f} s | "
              f"{r['server_step']:.3f} s | {k * r['eval_per_client']:.0f} s ({r['eval_per_client']:.2f} s a client) |",
              flush=True)


if __name__ == "__main__":
    main()
