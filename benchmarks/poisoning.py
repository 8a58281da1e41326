"""Poisoned clients: one client of K returns a scaled or sign-flipped update every round. How far
does every *other* client's final local test loss move, per algorithm, with and without a defence?

    python benchmarks/poisoning.py                       # tiny model, synthetic suite, a few minutes
    python benchmarks/poisoning.py --seeds 0,1,2 --out benchmarks/results/poisoning_tiny.md

Damage = mean over the honest clients of (final local loss with the attacker − without it); under
MIRA the attacker's graph neighbours (its task family) and the others are shown apart. Defences:
`federation.max_update_norm` set to twice the median update norm of the clean run (an operator
who knows the scale of honest updates), and `federation.clip_to_median = 2` (no prior knowledge).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import mira.simulation as simulation
from mira.client import build_workspace
from mira.comparison import variant_config
from mira.config import load_config

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["mira@ground_truth", "mira", "fedit", "ditto", "fedsa_lora", "local"]
ATTACKS = {"scaled x10": 10.0, "sign-flipped": -1.0, "sign-flipped x10": -10.0}
SETUP = ["model.name=tiny-random", "train.lr=0.05", "train.batch_size=8", "data.train_per_client=48", "data.val_per_client=0",
         "federation.rounds=4", "federation.sample_fraction=1.0", "train.local_steps=3", "eval.eval_every=4",
         "eval.generate_per_client=0", "eval.global_loss=false", "device=cpu"]
ATTACKER = 0  # reverse_words, family "words"


def poison(scale: float):
    """Make client ATTACKER send θ_sent + scale·(θ_trained − θ_sent) for every adapter it returns (its
    global copy too, under Ditto)."""
    honest = simulation.train_client

    def train_client(ws, k, received, *args, **kwargs):
        update = honest(ws, k, received, *args, **kwargs)
        if k == ATTACKER:
            update.reply = {key: received[key] + scale * (theta - received[key]) for key, theta in update.reply.items()}
        return update
    return train_client


def final_losses(ws, cfg) -> tuple[dict[str, float], float]:
    """Final per-client local loss, and the median update norm over the run."""
    history = simulation.run(cfg, overwrite=True, progress=False, ws=dataclasses.replace(ws, cfg=cfg)).history
    norms = [n for r in history for n in r.get("update_norm", {}).values()]
    return history[-1]["local_loss"], statistics.median(norms) if norms else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "poisoning_tiny.md"),
                        help="where the Markdown table goes")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(None, [*SETUP, f"out_dir='{ROOT / 'runs' / 'benchmarks' / 'poisoning'}'"])
    damage: dict[tuple[str, str, str], list[float]] = {}
    neighbours_damage: dict[tuple[str, str, str], list[float]] = {}
    for seed in seeds:
        ws = build_workspace(variant_config(base, "fedit", seed, base.run_dir))
        names = [c.name for c in ws.clients]
        family = ws.clients[ATTACKER].family
        neighbours = [n for c, n in zip(ws.clients, names) if c.family == family and n != names[ATTACKER]]
        for spec in VARIANTS:
            clean, norm = final_losses(ws, variant_config(base, spec, seed, base.run_dir, name="clean"))
            defences = {"none": {}, "max_update_norm = 2 x clean median": {"federation": {"max_update_norm": 2 * norm}},
                        "clip_to_median = 2": {"federation": {"clip_to_median": 2.0}}}
            for attack, scale in [("no attack", 1.0), *ATTACKS.items()]:
                for defence, params in defences.items():
                    if attack == "no attack" and defence == "none":
                        continue
                    simulation.train_client, honest = poison(scale), simulation.train_client
                    try:
                        losses, _ = final_losses(ws, variant_config(base, spec, seed, base.run_dir, params, name="attacked"))
                    finally:
                        simulation.train_client = honest
                    others = [n for n in names if n != names[ATTACKER]]
                    key = (spec, attack, defence)
                    damage.setdefault(key, []).append(statistics.fmean(losses[n] - clean[n] for n in others))
                    neighbours_damage.setdefault(key, []).append(
                        statistics.fmean(losses[n] - clean[n] for n in neighbours))
                    print(f"seed {seed} {spec:18} {attack:17} {defence:36} honest clients' loss change "
                          f"{damage[key][-1]:+.3f} (attacker's neighbours {neighbours_damage[key][-1]:+.3f})", flush=True)

    defences = ["none", "max_update_norm = 2 x clean median", "clip_to_median = 2"]
    lines = ["# Poisoned clients (tiny model, synthetic suite)", "",
             f"One attacker (client {ATTACKER}) of 9, every client trained every round, 4 rounds x 3 steps; "
             f"seeds {args.seeds}. Cells: mean change of the 8 honest clients' final local test loss against the "
             "clean run (+ = worse), mean over seeds; in brackets, the attacker's 2 family neighbours alone.", "",
             "| algorithm | attack | " + " | ".join(defences) + " |", "|---|---|" + "---|" * len(defences)]
    for spec in VARIANTS:
        for attack in ["no attack", *ATTACKS]:
            cells = []
            for defence in defences:
                key = (spec, attack, defence)
                if key not in damage:
                    cells.append("0 (clean)")
                    continue
                cells.append(f"{statistics.fmean(damage[key]):+.3f} ({statistics.fmean(neighbours_damage[key]):+.3f})")
            lines.append(f"| {spec} | {attack} | " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
