"""Deployment Engine overhead: seconds per round that a Flower deployment (stock SuperLink and 4
SuperNodes on 127.0.0.1, one process each) adds to the same round in the in-process simulator.

The model is the tiny one with rank-512 LoRA on every linear layer: 524,288 parameters, 2 MiB of
float32 per adapter each way, so transport is real and compute is small. Both paths run MIRA with
all 4 clients sampled, one local step, evaluation only at the end (not timed); a round's time is
its `train_seconds` in metrics.jsonl (send, train, receive, server step).

    python benchmarks/flower_overhead.py [--rounds 4] [--nodes 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from mira.config import load_config
from mira.flower.loopback import Loopback
from mira.simulation import run

ROOT = Path(__file__).resolve().parents[1]


def round_seconds(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_seconds"] for r in records if r["round"] > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args()
    tasks = '["add", "difference", "sentiment", "topic", "animal", "maximum"]'
    overrides = [f"data.tasks={tasks}", "data.partition=iid", f"data.num_clients={args.nodes}",
                 "model.name=tiny-random", "model.lora_r=512", "model.lora_alpha=512",
                 'model.target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]',
                 f"federation.rounds={args.rounds}", "federation.sample_fraction=1.0", "train.local_steps=1",
                 f"eval.eval_every={args.rounds}", "eval.generate_per_client=0", "eval.global_loss=false",
                 "name=overhead"]
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
