"""The results page of the 60-round NI paper preset (benchmarks/results/paper-ni-60/README.md), written
from its records (runs/: finished sub-runs): mean local test loss against the round for every variant
(the paper's Fig. 3 analogue, with the round from which each stays below FedIT's), the round-60 summary,
the paper's Table III categories beside the paper's numbers, and the devices and wall times.

    python benchmarks/horizon_curves.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd

from mira.reporting import Comparison

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "paper-ni-60"
TABLE_III = {  # the paper's local test loss of one NI client per category: MIRA / FedIT / FedPTuning
    "Question Answering": (2.7, 1.8, 9.55), "Program Execution": (0.23, 0.37, 0.87),
    "Speaker Identification": (1.87, 7.01, 11.98), "Explanation": (1.99, 2.55, 3.08)}
CAVEAT = ("One seed, settings from a proxy tuning (each variant's best in the NI verdict's equal-budget "
          "validation study), a 135M model and 2 local steps a visit where the paper trains a 7B model "
          "for many: this tests the paper's claim in its regime of clients, tasks and rounds, not at its "
          "model size.")


def markdown(frame: pd.DataFrame) -> list[str]:
    return frame.to_markdown(disable_numparse=True).splitlines()


def curve_table(comparison: Comparison) -> pd.DataFrame:
    """Mean local loss at every evaluated round, the lowest of each round in bold."""
    mean = comparison.curves()["mean"]
    best = mean.idxmin(axis="columns")
    return mean.apply(lambda row: row.map(lambda x, r=row.name: "-" if pd.isna(x) else
                                          (f"**{x:.3f}**" if best[r] == row.index[row == x][0] else f"{x:.3f}")),
                      axis="columns")


def categories(comparison: Comparison) -> pd.DataFrame:
    """The paper's Table III categories: mean final local loss of our clients there (clients won), and
    the paper's own numbers."""
    families = {c["name"]: c["family"] for c in comparison.clients}
    loss, winners = comparison.per_client(), comparison.winners()
    rows = {}
    for category, paper in TABLE_III.items():
        clients = [n for n, f in families.items() if f == category]
        if not clients:
            continue
        won = winners[clients].value_counts()
        rows[f"{category} ({len(clients)})"] = {v: f"{loss.loc[clients, v].mean():.3f} ({won.get(v, 0)})"
                                                for v in comparison.labels}
        rows[f"{category} ({len(clients)})"] |= {"paper: MIRA / FedIT / FedPTuning": " / ".join(map(str, paper))}
    return pd.DataFrame(rows).T


def devices(comparison: Comparison) -> list[str]:
    lines = []
    for run in sorted((comparison.path).glob("*/metrics.jsonl")):
        records = [json.loads(line) for line in run.read_text().splitlines()]
        wall = sum(r.get("wall_seconds", 0.0) for r in records)
        device = json.loads((run.parent / "device.json").read_text())["device"]
        lines.append(f"- {run.parent.name}: {wall / 60:.0f} min wall over {records[-1]['round']} rounds, {device}")
    return lines


def plot(comparison: Comparison) -> None:
    mean = comparison.curves()["mean"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for variant in mean:
        curve = mean[variant].dropna()
        axes.plot(curve.index, curve.values, marker="o", markersize=3, label=variant)
    axes.set_xlabel("round")
    axes.set_ylabel(f"mean local test loss ({len(comparison.clients)} clients)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "mean_local_loss.png", dpi=110)


def main() -> None:
    comparison = Comparison(RESULTS / "runs")
    plot(comparison)
    final = comparison.final().set_index("variant")
    best = final["mean_local_loss"].idxmin()
    best_selected = final["selected_mean_local_loss"].idxmin() if comparison.has_selection else None
    stays_below = {v: comparison.crossover(v) for v in comparison.labels if v != "fedit"}
    lines = ["# The paper's horizon on Natural Instructions: 60 rounds, 80 clients with their own tasks", "",
             "Written by `python benchmarks/horizon_curves.py` from the records in `runs/` (made by "
             "`python benchmarks/paper_presets.py --preset ni --horizon 60 --algorithms <variant> --params "
             "benchmarks/paper_params.toml`, one thread a variant). configs/paper_ni.toml: 80 clients, each one "
             "of the 80 NI tasks with the most instances (40 categories), 20 % of a task's instances for "
             "training (at most 64), 8 validation and 16 test examples a client; 10 % sampled a round, 2 local "
             "steps of 8 examples cut to 96 tokens (length-grouped), LoRA r = 16, bfloat16 autocast; "
             "SmolLM2-135M. The full comparison (per client, per category, global loss, ROUGE-L, bytes) is "
             "`results.md`, re-rendered by `mira report benchmarks/results/paper-ni-60/runs`; the loss change "
             "by times sampled is `by_times_sampled.md` (`python benchmarks/by_times_sampled.py "
             "benchmarks/results/paper-ni-60/runs`).", "",
             "## Mean local test loss against the round (Fig. 3)", "", *markdown(curve_table(comparison)), "",
             "![mean local loss against the round](mean_local_loss.png)", "",
             "First evaluated round from which a variant's mean local loss stays below FedIT's (the paper: "
             "MIRA, about 20): " + "; ".join(f"{v}: {r}" for v, r in stays_below.items()) + ".", "",
             "## At round 60", "", *markdown(comparison.summary().set_index("summary")), "",
             "## The paper's Table III categories", "",
             "Mean final local loss of our clients in each category (clients won in brackets), beside the "
             "paper's loss for its one client there.", "", *markdown(categories(comparison)), "",
             "## What it shows", "",
             f"Lowest mean local loss at round 60: {best} (final adapters)" +
             (f", {best_selected} (each client's validation-selected adapter)" if best_selected else "") +
             ". " + CAVEAT, "", "## Devices and wall time", "", *devices(comparison)]
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
