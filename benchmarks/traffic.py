"""Measured traffic per algorithm: one round of every registered algorithm on the given model
(default: the embedded SmolLM2-135M, LoRA r = 8 on q_proj and v_proj; FedPTuning's P-tuning adapter
instead), two sampled clients, one local step each; prints the bytes each sampled client received
and sent (the algorithm's messages) and the private state the server carried for it, from the run's
metrics, and writes benchmarks/results/traffic.md.

    python benchmarks/traffic.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import ROOT, device_name  # noqa: E402
from mira.algorithms import ALGORITHMS  # noqa: E402
from mira.client import shared_workspace  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.reporting import human_bytes  # noqa: E402
from mira.simulation import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model: smollm2-135m-instruct (embedded), tiny-random, a local directory, "
                             "a .gguf file or a Hub id")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        base = [f"model.name='{args.model}'", f"out_dir='{out}'", "federation.rounds=1", "federation.sample_count=2",
                "train.local_steps=1", "train.batch_size=2", "data.train_per_client=2", "data.val_per_client=0",
                "data.test_per_client=1", "eval.generate_per_client=0", "eval.global_loss=false", "device=cpu"]
        workspaces = {}
        ws = shared_workspace(workspaces, load_config(None, base))
        numel = ws.slot.layout.numel
        rows = [f"{args.model}: {numel:,} adapter values ({numel * 4 / 1e6:.2f} MB in float32); measured on "
                f"{device_name()}; per sampled client per round, from the metrics of a one-round run:", "",
                "| algorithm | received (bytes_down) | sent (bytes_up) | private state carried, both ways (bytes_state) |",
                "|---|---|---|---|"]
        for name in sorted(ALGORITHMS):
            cfg = load_config(None, base + [f"federation.algorithm={name}", f"name={name}"])
            record = run(cfg, progress=False, ws=shared_workspace(workspaces, cfg)).history[1]
            n = len(record["sampled"])
            rows.append(f"| {name} | " + " | ".join(human_bytes(record[key] / n)
                                                    for key in ("bytes_down", "bytes_up", "bytes_state")) + " |")
    text = "\n".join(rows) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "traffic.md").write_text(text)


if __name__ == "__main__":
    main()
