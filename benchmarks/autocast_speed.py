"""Seconds per LoRA training step of SmolLM2-135M in float32 and under bfloat16 autocast, one thread,
on one batch of 8 examples of a Natural Instructions task (what `model.autocast` trades), the latter with
autocast casting the frozen base weights at every forward pass and with bfloat16 copies made once
(`mira.client.base_weights`, as training uses them; the losses show they compute the same); then, under
bfloat16 autocast, one client's full evaluation (validation, test, 4 global-loss cells, 4 answers of 16
tokens; the 60-round Dolly preset's sets) with the base weights cast once for it
(`mira.client.evaluation_precision`) and with autocast casting them at every forward pass, interleaved,
and whether the two give the same numbers.

    python benchmarks/autocast_speed.py        # needs ../shared/data; about three minutes

The first step of each way warms up and is not counted. Print the CPU beside the numbers: on
CPUs without AVX512-BF16 or AMX, bfloat16 is many times slower, not faster.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mira.client  # noqa: E402
from compare_real import device_name  # noqa: E402
from mira.client import base_weights, build_workspace, evaluate_client  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.data.encode import collate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8
WAYS = ("float32", "bfloat16, autocast casting", "bfloat16, base weights cast once")


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "natural_instructions.toml",
                      ["data.train_per_client=32", "model.max_length=128", "device=cpu",
                       'data.tasks=["task1146_country_capital"]',
                       f"data.path='{ROOT.parent / 'shared' / 'data' / 'natural-instructions' / 'tasks'}'",
                       f"data.families='{ROOT / 'configs' / 'ni_families.json'}'", "model.autocast='bfloat16'"])
    ws = build_workspace(cfg)
    model = ws.model.train()
    batch = collate(ws.train_sets[0][:8], ws.pad_id)
    print(f"{device_name()}; batch {tuple(batch['input_ids'].shape)}")
    for way in WAYS * 2:  # interleaved, as the box's load changes
        times, losses = [], []
        ws.slot.set(ws.initial_theta)
        optimizer = torch.optim.AdamW(ws.slot.params, lr=1e-3)
        for _ in range(STEPS + 1):
            begin = time.perf_counter()
            with (base_weights(ws, torch.bfloat16) if way.endswith("once") else contextlib.nullcontext()), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=way != "float32", cache_enabled=False):
                loss = model(**batch).loss
                loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - begin)
            losses.append(round(loss.item(), 6))
        print(f"{way:32}: {statistics.median(times[1:]):.2f} s per step (median of {STEPS} after a warm-up step); losses {losses[:4]}")
    evaluation_cast()


def evaluation_cast() -> None:
    """Seconds of one Dolly-preset client's final evaluation, base weights cast once or at every pass."""
    cfg = load_config(ROOT / "configs" / "paper_dolly.toml",
                      ["model.max_length=96", "eval.max_new_tokens=16", "model.autocast='bfloat16'", "device=cpu",
                       f"data.path='{ROOT.parent / 'shared' / 'data' / 'dolly' / 'databricks-dolly-15k.jsonl'}'"])
    ws = build_workspace(cfg)
    noise = torch.Generator().manual_seed(0)
    thetas = ws.initial_theta + 0.02 * torch.randn((5, ws.initial_theta.numel()), generator=noise)
    cast_once = mira.client.evaluation_precision
    timed = {}
    for way, context in [("cast once", cast_once), ("autocast casting", mira.client.compute_precision),
                         ("cast once", cast_once), ("autocast casting", mira.client.compute_precision)]:
        mira.client.evaluation_precision = context
        begin = time.perf_counter()
        result = evaluate_client(ws, 0, thetas[0], True, thetas[1:])
        timed.setdefault(way, []).append((time.perf_counter() - begin, result))
    mira.client.evaluation_precision = cast_once
    for way, runs in timed.items():
        print(f"evaluation, {way:16}: {' / '.join(f'{s:.1f}' for s, _ in runs)} s for one client")
    print("same numbers:", all(r == timed["cast once"][0][1] for runs in timed.values() for _, r in runs))


if __name__ == "__main__":
    main()
