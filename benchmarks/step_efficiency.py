"""Where a training step's CPU goes, before and after the speed work (issue #32), on three settings: the
Quickstart (synthetic suite), the NI verdict and the NI paper preset at the 60-round budget.

For each setting and each way of computing a step it prints tokens computed (batch x padded width),
non-padding tokens, scored (response) tokens, seconds per step, the step's FLOPs (torch.utils.flop_counter)
and the achieved FLOP/s against this box's matrix-multiply peak, measured in the same run (float32, and
bfloat16 where the CPU has AVX512-BF16/AMX). "before": the model's own loss (the vocabulary projection at
every position) on randomly drawn batches, with the model's SDPA attention; "after": the projection only
at response positions, on length-grouped batches where the setting groups them (the NI preset), with
the attention kernel train.attention picks (eager under bfloat16 autocast on CPU).

With --runs, it also splits recorded sub-runs' wall time (metrics.jsonl: train_seconds, eval_seconds,
generate_seconds, checkpoint_seconds, wall_seconds per round) into training, evaluation (and within it the
generation of answers for ROUGE-L), checkpoints and the rest (server bookkeeping, metrics), and counts the
client evaluations the run asked for against re-evaluating every client each time.

    python benchmarks/step_efficiency.py                      # all three settings, 1 thread
    python benchmarks/step_efficiency.py --settings ni-preset --threads 2
    python benchmarks/step_efficiency.py --settings none --runs benchmarks/results/paper-ni-60/runs/*-s0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import ROOT, SHARED, device_name, has_fast_bfloat16  # noqa: E402
from mira.client import build_workspace, compute_precision, training_kernels  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.data.encode import IGNORE, batch_schedule, collate  # noqa: E402
from mira.evaluate import response_loss  # noqa: E402

VERDICT_TASKS = ["task141_odd-man-out_classification_category", "task142_odd-man-out_classification_no_category",
                 "task126_scan_structured_text_generation_command_action_all",
                 "task128_scan_structured_text_generation_command_action_short", "task1146_country_capital",
                 "task1321_country_continent", "task151_tomqa_find_location_easy_clean",
                 "task152_tomqa_find_location_easy_noise"]
AUTOCAST = f"model.autocast='{'bfloat16' if has_fast_bfloat16() else 'none'}'"
SETTINGS = {
    "quickstart": (None, []),
    "ni-verdict": (None, ["data.source=natural_instructions", f"data.path='{SHARED / 'natural-instructions' / 'tasks'}'",
                          f"data.tasks={json.dumps(VERDICT_TASKS)}", "data.train_per_client=32", "model.max_length=128",
                          "train.local_steps=4", "train.batch_size=8", AUTOCAST]),
    "ni-preset": (ROOT / "configs" / "paper_ni.toml",
                  [f"data.path='{SHARED / 'natural-instructions' / 'tasks'}'", "model.max_length=96",
                   "train.local_steps=2", "train.group_by_length=true", AUTOCAST]),
}


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0) -> float:
    """FLOP/s of repeated size x size matrix products in `dtype` on the current threads."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    count, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        a @ b
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - begin)


def step_batches(ws, clients: list[int], grouped: bool) -> list[dict[str, torch.Tensor]]:
    """Round 1's batches of `clients` as the trainer draws them, grouped by length or not."""
    cfg = ws.cfg
    batches = []
    for k in clients:
        data = ws.train_sets[ws.position(k)]
        lengths = [len(e.input_ids) for e in data] if grouped else None
        for ids in batch_schedule(len(data), cfg.train.batch_size, cfg.train.local_steps, cfg.seed, k, 1, lengths):
            batches.append(collate([data[i] for i in ids], ws.pad_id))
    return batches


def measure(ws, batches, full_loss: bool) -> dict:
    """Seconds per training step (median), FLOPs of one step, and the token counts of `batches`."""
    ws.slot.set(ws.initial_theta)
    model = ws.model
    params = list(ws.slot.params)
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step(batch):
        with compute_precision(ws) if full_loss else training_kernels(ws):
            loss = model(**batch).loss if full_loss else response_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    flops = counter.get_total_flops()
    seconds = []
    for batch in batches:
        begin = time.perf_counter()
        step(batch)
        seconds.append(time.perf_counter() - begin)
    model.eval()
    computed = sum(b["input_ids"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    scored = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    width = statistics.mean(b["input_ids"].shape[1] for b in batches)
    return {"s_per_step": statistics.median(seconds[1:] or seconds), "flops_first": flops,
            "first_tokens": batches[0]["input_ids"].numel(), "computed": computed,
            "real": real, "scored": scored, "width": width, "steps": len(batches)}


def run_setting(name: str, clients: int, peaks: dict[str, float]) -> list[str]:
    path, overrides = SETTINGS[name]
    cfg = load_config(path, [*overrides, "device=cpu"])
    ws = build_workspace(cfg)
    chosen = list(range(min(clients, len(ws.clients))))
    grouped = cfg.train.group_by_length
    lines = [f"\n## {name}: {len(ws.clients)} clients, batch {cfg.train.batch_size}, max_length {cfg.model.max_length}, "
             f"{cfg.train.local_steps} local steps, autocast {cfg.model.autocast}; clients {chosen[0]}-{chosen[-1]}, "
             f"round 1's batches", "",
             "| way | steps | mean width | computed tokens | non-padding | scored | s/step | GFLOP/step | GFLOP/s | "
             "of fp32 peak | of bf16 peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for way, full_loss, group in (("before", True, False), ("after", False, grouped)):
        m = measure(ws, step_batches(ws, chosen, group), full_loss)
        flop_per_step = m["flops_first"] * m["computed"] / m["steps"] / m["first_tokens"]  # FLOPs scale with tokens
        achieved = flop_per_step / m["s_per_step"]
        results[way] = m
        bf16 = f"{achieved / peaks['bfloat16']:.1%}" if "bfloat16" in peaks else "-"
        lines.append(f"| {way} | {m['steps']} | {m['width']:.0f} | {m['computed']} | {m['real'] / m['computed']:.1%} | "
                     f"{m['scored'] / m['computed']:.1%} | {m['s_per_step']:.3f} | {flop_per_step / 1e9:.1f} | "
                     f"{achieved / 1e9:.0f} | {achieved / peaks['float32']:.1%} | {bf16} |")
    lines.append(f"\nafter / before: {results['before']['s_per_step'] / results['after']['s_per_step']:.2f}x faster "
                 "per step (GFLOP/step: the first step's FLOPs per token times the mean tokens of a step)")
    return lines


PERSONAL = {"mira", "local", "ditto"}
"""Algorithms whose clients' adapters change only when they are sampled."""


def split(run_dirs: list[Path]) -> list[str]:
    """Each recorded sub-run's wall time by part, and its client evaluations against evaluating everyone."""
    lines = ["\n## Recorded sub-runs: where the wall time went", "",
             "| sub-run | rounds | wall min | training | evaluation | of which answers | of which the last round's "
             "| checkpoints | rest | client evaluations | of re-evaluating all |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in run_dirs:
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        clients = json.loads((run / "clients.json").read_text())
        shared = load_config(run / "config.toml").federation.algorithm not in PERSONAL
        timed = [r for r in history if "wall_seconds" in r]
        if not timed:
            lines.append(f"| {run.name} | recorded before wall_seconds existed |" + " |" * 9)
            continue
        wall = sum(r["wall_seconds"] for r in timed)
        parts = {key: sum(r.get(key, 0.0) for r in timed) for key in
                 ("train_seconds", "eval_seconds", "generate_seconds", "checkpoint_seconds")}
        # older records lack generate_seconds and checkpoint_seconds: their checkpoints were written outside
        # wall_seconds, their answers counted in eval_seconds only
        share = {key: f"{value / wall:.0%}" if any(key in r for r in timed) else "not recorded"
                 for key, value in parts.items()}
        asked = every = 0
        changed: set[str] = set()
        for r in history:
            changed |= set(r.get("sampled", []))
            if "local_loss" in r:
                if r["round"] > 0:
                    every += len(clients)
                    asked += len(clients) if shared else len(changed)
                changed = set()
        rest = wall - parts["train_seconds"] - parts["eval_seconds"] - parts["checkpoint_seconds"]
        lines.append(f"| {run.name} | {len(timed)} | {wall / 60:.1f} | {share['train_seconds']} | {share['eval_seconds']} "
                     f"| {share['generate_seconds']} | {timed[-1].get('eval_seconds', 0.0) / wall:.0%} "
                     f"| {share['checkpoint_seconds']} | {rest / wall:.0%} | {asked} | {asked / max(every, 1):.0%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="quickstart,ni-verdict,ni-preset",
                        help="comma-separated: quickstart, ni-verdict, ni-preset (or none)")
    parser.add_argument("--clients", type=int, default=4, help="clients whose round-1 batches are timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--runs", nargs="*", default=[], type=Path, help="recorded sub-run folders to split")
    parser.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = [s for s in args.settings.split(",") if s != "none"]
    lines = [f"# Training-step efficiency\n\n{device_name()}, torch {torch.__version__}"]
    if settings:  # the peak is measured only beside the steps it is compared with
        peaks = {"float32": matmul_peak(torch.float32)}
        if has_fast_bfloat16():
            peaks["bfloat16"] = matmul_peak(torch.bfloat16)
        lines[0] += "; matmul peak (1024^3): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    for name in settings:
        lines += run_setting(name, args.clients, peaks)
    if args.runs:
        lines += split(args.runs)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
