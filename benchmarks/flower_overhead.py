"""Deployment Engine overhead: what a ClientApp process spends before it can answer a message, and
the seconds per round that a Flower deployment (stock SuperLink and 4 SuperNodes on 127.0.0.1, one
process each) adds to the same round in the in-process simulator.

Start-up (`--part startup`): Flower starts a fresh process for every message, so each phase is timed
in a fresh interpreter, as a node's ClientApp runs it: importing the app, building the node's workspace
(its client's data, model and token ids; the node cache is filled by the first message of a run and
read by the later ones), and one training message's client step. Shown for the tiny model of the
round benchmark and for the NI preset on SmolLM2-135M (configs/paper_ni.toml, node 0). `--source DIR`
times another checkout's `src` (the numbers before a change).

The model is the tiny one with rank-512 LoRA on every linear layer: 524,288 parameters, 2 MiB of
float32 per adapter each way, so transport is real and compute is small. Both paths run MIRA with
all 4 clients sampled, one local step, evaluation only at the end (not timed); a round's time is
its `train_seconds` in metrics.jsonl (send, train, receive, server step).

    python benchmarks/flower_overhead.py [--part both] [--rounds 4] [--nodes 4] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mira.config import load_config
from mira.flower.loopback import Loopback
from mira.simulation import run

ROOT = Path(__file__).resolve().parents[1]


def round_seconds(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_seconds"] for r in records if r["round"] > 0]


MESSAGE = """
import json, sys, time
from types import SimpleNamespace
start = time.perf_counter()
import flwr.clientapp, flwr.app  # flwr-clientapp has imported these before it loads the app
flwr_done = time.perf_counter()
import mira.flower.clientapp as app
imported = time.perf_counter()
import torch, transformers, peft  # what a training message needs: imported with the app or on first use
libraries = time.perf_counter()
from mira.config import load_config
try:
    from mira.flower.config_message import config_record
except ImportError:  # a checkout before config_message.py
    from mira.flower.transport import config_record
cfg = load_config(sys.argv[1] or None, json.loads(sys.argv[2]))
msg = SimpleNamespace(content={"config": config_record(cfg, 1)})
ready = time.perf_counter()
ws, k, _ = app._client(msg, SimpleNamespace(node_config={"partition-id": 0}))
built = time.perf_counter()
from mira.algorithms import ADAPTER
from mira.client import train_client
import mira.flower.transport
train_client(ws, k, {ADAPTER: ws.initial_theta}, 1)
trained = time.perf_counter()
print(json.dumps({"flwr": flwr_done - start, "app": imported - flwr_done, "libraries": libraries - imported,
                  "workspace": built - ready, "train": trained - built, "total": trained - start - (ready - libraries)}))
"""


def message_startup(source: Path, config: str, overrides: list[str], cache: Path) -> dict[str, float]:
    """Phase times of one training message in a fresh interpreter running `source`'s mira."""
    env = {**os.environ, "PYTHONPATH": str(source), "MIRA_NODE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MESSAGE, config, json.dumps(overrides)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def startup(source: Path, tiny: list[str], repeats: int = 5) -> None:
    print(f"per-message start-up of a ClientApp process (source {source}; median of {repeats}; one thread)")
    print("| workload | message | flwr | mira's app | torch + transformers + PEFT | workspace | client step | total |")
    print("|---|---|---|---|---|---|---|---|")
    for name, config, overrides in (("tiny, r = 512", "", tiny), ("NI preset, SmolLM2-135M", "configs/paper_ni.toml",
                                                                   ["train.local_steps=1"])):
        with tempfile.TemporaryDirectory() as cache:
            first = message_startup(source, config, overrides, Path(cache))
            later = [message_startup(source, config, overrides, Path(cache)) for _ in range(repeats)]
        for label, runs in (("first of a run", [first]), ("later", later)):
            median = {key: statistics.median(r[key] for r in runs) for key in first}
            print(f"| {name} | {label} | " + " | ".join(f"{median[key]:.2f} s" for key in first) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("startup", "rounds", "both"), default="both",
                        help="time a ClientApp's start-up, the per-round overhead against the simulator, or both")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each timed run")
    parser.add_argument("--nodes", type=int, default=4, help="SuperNodes (one client each)")
    parser.add_argument("--source", type=Path, default=ROOT / "src", help="the mira source tree to time (start-up)")
    args = parser.parse_args()
    tasks = '["add", "difference", "sentiment", "topic", "animal", "maximum"]'
    overrides = [f"data.tasks={tasks}", "data.partition=iid", f"data.num_clients={args.nodes}",
                 "model.name=tiny-random", "model.lora_r=512", "model.lora_alpha=512",
                 'model.target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]',
                 f"federation.rounds={args.rounds}", "federation.sample_fraction=1.0", "train.local_steps=1",
                 f"eval.eval_every={args.rounds}", "eval.generate_per_client=0", "eval.global_loss=false",
                 "name=overhead"]
    if args.part in ("startup", "both"):
        startup(args.source.resolve(), overrides)
    if args.part == "startup":
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(None, overrides + [f"out_dir='{tmp / 'sim'}'"])
        simulated = round_seconds(run(cfg, progress=False).run_dir)
        with Loopback(tmp / "deployment", num_nodes=args.nodes) as federation:
            log = federation.run(ROOT, {"overrides": "; ".join(overrides), "out-dir": str(tmp / "flower")}, timeout=1800)
        if not (tmp / "flower" / "overhead" / "metrics.jsonl").exists():
            raise SystemExit(f"the Flower run failed:\n{log[-3000:]}")
        deployed = round_seconds(tmp / "flower" / "overhead")
    adapter_mib = 524288 * 4 / 2**20
    sim, dep = statistics.median(simulated), statistics.median(deployed)
    print(f"{args.nodes} nodes, {adapter_mib:.0f} MiB adapter per client each way, {args.rounds} rounds")
    print(f"in-process round (median): {sim:.2f} s   rounds: {', '.join(f'{s:.2f}' for s in simulated)}")
    print(f"deployment round (median): {dep:.2f} s   rounds: {', '.join(f'{s:.2f}' for s in deployed)}")
    print(f"deployment overhead per round: {dep - sim:.2f} s (target <= 1 s)")


if __name__ == "__main__":
    main()
