"""The results page of a 60-round paper preset (benchmarks/results/paper-<preset>-60/README.md), written
from its records (runs/: finished sub-runs): mean local test loss against the round for every variant
(the paper's Fig. 3 analogue, with the round from which each stays below FedIT's), the round-60 summary,
beside the paper's numbers (NI: its Table III categories; Dolly: its Table I, ROUGE-L), and the devices
and wall times.

    python benchmarks/horizon_curves.py --preset ni
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import pandas as pd

from mira.reporting import Comparison

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TABLE_III = {  # the paper's local test loss of one NI client per category: MIRA / FedIT / FedPTuning
    "Question Answering": (2.7, 1.8, 9.55), "Program Execution": (0.23, 0.37, 0.87),
    "Speaker Identification": (1.87, 7.01, 11.98), "Explanation": (1.99, 2.55, 3.08)}
TABLE_I = {"mira": (20.8, 26.6), "fedit": (19.1, 28.4), "fedptuning": (14.7, 12.3)}
"""The paper's ROUGE-L (%) on Dolly-15k: Data-Juicer 1.3B, GPT-2-large."""
PRESETS = {
    "ni": ("Natural Instructions", "configs/paper_ni.toml: 80 clients, each one of the 80 NI tasks with the most "
           "instances (40 categories), 20 % of a task's instances for training (at most 64), 8 validation and 16 "
           "test examples a client"),
    "dolly": ("Dolly-15k", "configs/paper_dolly.toml: 80 clients from a Dirichlet(0.5) split of Dolly-15k over its 8 "
              "categories, at most 48 training, 16 validation and 16 test examples a client"),
}
CAVEAT = ("One seed, settings from a proxy tuning (each variant's best in the NI verdict's equal-budget "
          "validation tuning with the bfloat16 fix: benchmarks/paper_params.toml; each sub-run's config.toml "
          "holds the settings it ran with), a 135M model and 2 local steps a visit where the paper trains a 7B "
          "model for many: this tests the paper's claim in its regime of clients, tasks and rounds, not at its "
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


def rouge(comparison: Comparison) -> pd.DataFrame:
    """The paper's Table I: mean ROUGE-L (%) of our variants, final and selected, beside the paper's."""
    final = comparison.final().set_index("variant")
    rows = {}
    for variant in comparison.labels:
        paper = TABLE_I.get(variant.split("+")[0])
        rows[variant] = {"ROUGE-L (%), final": f"{100 * final.at[variant, 'mean_rouge_l']:.1f}",
                         "selected": f"{100 * final.at[variant, 'selected_mean_rouge_l']:.1f}",
                         "paper: Data-Juicer 1.3B / GPT-2-large": " / ".join(map(str, paper)) if paper else "-"}
    return pd.DataFrame(rows).T


def paired(comparison: Comparison, reference: str) -> pd.DataFrame:
    """Each variant against `reference`, client by client at round 60: the mean difference in local loss
    ± its standard error over the clients (negative: the variant is lower), and the clients where it is
    lower, for the final and the validation-selected adapters."""
    rows = {}
    for column, name in [("local_loss", "final"), ("selected_local_loss", "selected")]:
        if column == "selected_local_loss" and not comparison.has_selection:
            continue
        loss = comparison.per_client(column)
        for variant in (v for v in comparison.labels if v != reference):
            diff = loss[variant] - loss[reference]
            rows.setdefault(variant, {})[f"{name}: mean difference ± s.e."] = \
                f"{diff.mean():+.3f} ± {diff.std() / len(diff) ** 0.5:.3f}"
            rows[variant][f"{name}: clients lower"] = f"{int((diff < 0).sum())} of {len(diff)}"
    return pd.DataFrame(rows).T


def devices(comparison: Comparison) -> list[str]:
    lines = []
    for run in sorted((comparison.path).glob("*/metrics.jsonl")):
        records = [json.loads(line) for line in run.read_text().splitlines()]
        wall = sum(r.get("wall_seconds", 0.0) for r in records)
        device = json.loads((run.parent / "device.json").read_text())["device"]
        lines.append(f"- {run.parent.name}: {wall / 60:.0f} min wall over {records[-1]['round']} rounds, {device}")
    return lines


def plot(comparison: Comparison, results: Path) -> None:
    mean = comparison.curves()["mean"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for variant in mean:
        curve = mean[variant].dropna()
        axes.plot(curve.index, curve.values, marker="o", markersize=3, label=variant)
    axes.set_xlabel("round")
    axes.set_ylabel(f"mean local test loss ({len(comparison.clients)} clients)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(results / "mean_local_loss.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ni")
    preset = parser.parse_args().preset
    dataset, setting = PRESETS[preset]
    results = RESULTS / f"paper-{preset}-60"
    comparison = Comparison(results / "runs")
    plot(comparison, results)
    final = comparison.final().set_index("variant")
    best = final["mean_local_loss"].idxmin()
    best_selected = final["selected_mean_local_loss"].idxmin() if comparison.has_selection else None
    stays_below = {v: comparison.crossover(v) for v in comparison.labels if v != "fedit"}
    if preset == "ni":
        paper = ["## The paper's Table III categories", "",
                 "Mean final local loss of our clients in each category (clients won in brackets), beside the "
                 "paper's loss for its one client there.", "", *markdown(categories(comparison))]
    else:
        paper = ["## ROUGE-L (Table I)", "", "Mean ROUGE-L over the 80 clients' answers (4 a client, at most 16 "
                 "new tokens), beside the paper's with its two models.", "", *markdown(rouge(comparison))]
    lines = [f"# The paper's horizon on {dataset}: 60 rounds, 80 clients", "",
             f"Written by `python benchmarks/horizon_curves.py --preset {preset}` from the records in `runs/` (made "
             f"by `python benchmarks/paper_presets.py --preset {preset} --horizon 60 --algorithms <variant> --params "
             f"benchmarks/paper_params.toml`, one thread a variant). {setting}; 10 % sampled a round, 2 local "
             "steps of 8 examples cut to 96 tokens (length-grouped), LoRA r = 16, bfloat16 autocast; "
             "SmolLM2-135M. The full comparison (per client, per category, global loss, ROUGE-L, bytes) is "
             f"`results.md`, re-rendered by `mira report benchmarks/results/paper-{preset}-60/runs`; the loss "
             "change by times sampled is `by_times_sampled.md` (`python benchmarks/by_times_sampled.py "
             f"benchmarks/results/paper-{preset}-60/runs`).", "",
             "## Mean local test loss against the round (Fig. 3)", "", *markdown(curve_table(comparison)), "",
             "![mean local loss against the round](mean_local_loss.png)", "",
             "First evaluated round from which a variant's mean local loss stays below FedIT's (the paper, on NI: "
             "MIRA, about 20): " + "; ".join(f"{v}: {r}" for v, r in stays_below.items()) + ".", "",
             "## At round 60", "", *markdown(comparison.summary().set_index("summary")), "",
             *[line for reference in ("fedit", "local") if reference in comparison.labels for line in [
                 f"Client by client against {reference} (mean local-loss difference over the clients, negative "
                 f"where the variant is lower):", "", *markdown(paired(comparison, reference)), ""]],
             *paper, "",
             "## What it shows", "",
             f"Lowest mean local loss at round 60: {best} (final adapters)" +
             (f", {best_selected} (each client's validation-selected adapter)" if best_selected else "") +
             ". " + CAVEAT, "", "## Devices and wall time", "", *devices(comparison)]
    (results / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
