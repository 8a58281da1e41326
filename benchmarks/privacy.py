"""What client-level differential privacy costs MIRA and FedIT, in one of two settings (`--setting`):

- `verdict-ni`: the tuned NI verdict setting (benchmarks/verdict.py: 8 NI clients in 4 families, 32
  training examples each, every client trained in each of 3 rounds of 4 local steps; each variant with
  its verdict-tuned settings): every client releases 3 times; δ = 1/32.
- `ni-60`: the 60-round NI paper preset (benchmarks/paper_presets.py --horizon 60: 80 clients with their
  own tasks, 10 % sampled; each variant with its settings in benchmarks/paper_params.toml): a client
  releases about 6 times (2 to 13); δ = 1/64 for choosing σ (each client's own δ is 1/(its training
  examples)). Its run without privacy is the published paper-ni-60 comparison, not run again.

Four levels: no privacy, and clipping at C (`--clip`, default 1.0, below the updates' typical norm of
2-5) with the noise multiplier σ that gives ε = 1, 4 and 16 at that δ after that many releases. For
each level and variant: mean local and global test loss, mean ROUGE-L, every client's ε, and the wall
time against the run without privacy. Each level is a comparison of its own
(benchmarks/results/privacy-ni-<level>/ or privacy-ni-60-<level>/, re-rendered by `mira report`); the
summary table and the loss-against-ε plot go to benchmarks/results/privacy-ni/ (or privacy-ni-60/).

    python benchmarks/privacy.py                      # about 50 minutes on one core of an AVX512-BF16 Xeon
    python benchmarks/privacy.py --levels none,1      # a subset; later commands add the rest
    python benchmarks/privacy.py --setting ni-60 --levels 16 --algorithms fedit   # about 2 hours a sub-run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import DATASETS, ROOT, compare_kept, publish  # noqa: E402
from mira.comparison import read_params  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.privacy import epsilon  # noqa: E402
from mira.results import read_history, spec_of  # noqa: E402
from paper_presets import BUDGETS, report_everything_recorded  # noqa: E402
from verdict import BUDGET, SUBSETS  # noqa: E402

VARIANTS = ["mira@ground_truth", "fedit"]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Setting:
    name: str
    """results go to benchmarks/results/<name>-<level>/, the summary to <name>/"""
    config: Path | None
    overrides: list[str]
    params: Path
    releases: int
    """a client's releases (on average, where clients are sampled) that σ is chosen for"""
    delta: float
    title: str
    description: str
    without_privacy: str | None = None
    """a published comparison that is this setting's run without privacy"""

    def level(self, level: str) -> str:
        if level == "none" and self.without_privacy:
            return self.without_privacy
        return f"{self.name}-{'none' if level == 'none' else 'eps' + level}"


SETTINGS = {
    "verdict-ni": Setting("privacy-ni", None, [*DATASETS["ni"], *SUBSETS["ni"], *BUDGET],
                          RESULTS / "verdict-ni" / "best_params.toml", 3, 1 / 32,
                          "the NI verdict setting", "8 clients, 3 rounds, every client releases 3 times; δ = 1/32"),
    "ni-60": Setting("privacy-ni-60", ROOT / "configs" / "paper_ni.toml", BUDGETS[60],
                     ROOT / "benchmarks" / "paper_params.toml", 6, 1 / 64,
                     "the 60-round NI paper preset", "80 clients, 10 % sampled, a client releases 2 to 13 times "
                     "(σ chosen for 6 releases at δ = 1/64; each client's ε at δ = 1/(its training examples)); "
                     "the run without privacy is the published paper-ni-60 comparison", "paper-ni-60"),
}


def sigma_for(target: float, setting: Setting) -> float:
    """The noise multiplier whose `setting.releases` compositions reach ε = target at its δ (bisection)."""
    low, high = 0.05, 100.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if epsilon(mid, setting.releases, setting.delta) > target else (low, mid)
    return high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="none,16,4,1", help="comma-separated: none, or target ε values")
    parser.add_argument("--clip", type=float, default=1.0, help="the clipping norm C of a client's update")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="verdict-ni", help="see above")
    parser.add_argument("--algorithms", default=",".join(VARIANTS),
                        help="comma-separated subset of the two variants (several commands may run side by side)")
    args = parser.parse_args()
    setting, variants = SETTINGS[args.setting], args.algorithms.split(",")
    params = read_params(setting.params, variants)
    seeds = [int(s) for s in args.seeds.split(",")]
    for level in args.levels.split(","):
        if level == "none" and setting.without_privacy:
            continue
        private = [] if level == "none" else [f"privacy.clip={args.clip}",
                                              f"privacy.noise_multiplier={sigma_for(float(level), setting)}"]
        name = setting.level(level)
        overrides = [*setting.overrides, *private, f"name='{name}'", f"out_dir='{ROOT / 'runs' / 'benchmarks'}'"]
        out = compare_kept(load_config(setting.config, overrides), variants, seeds, name, params)
        # what is finished, also by a command beside this one whose variant may still be training
        published, finished_seeds = report_everything_recorded(out, RESULTS / name)
        publish(out, name, overrides, "benchmarks/privacy.py",
                ["--setting", args.setting, "--levels", level, "--clip", str(args.clip),
                 "--seeds", ",".join(map(str, finished_seeds)), "--algorithms", ",".join(map(spec_of, published))])
    summarise(setting, [level for level in ["none", "16", "4", "1"] if (RESULTS / setting.level(level) / "runs").is_dir()],
              seeds)


def sampled_split(history: list[dict]) -> tuple[int, int, float, int, float] | None:
    """The first evaluation after round 0: its round, how many clients were sampled so far and their mean
    local loss, how many were not and theirs, each client at its newest evaluation; None if either group is
    empty."""
    sampled, newest = set(), {}
    for record in history:
        if record["round"] > 0:
            sampled |= set(record.get("sampled", []))
        newest |= record.get("local_loss", {})
        if record["round"] > 0 and "mean_local_loss" in record:
            were = [loss for client, loss in newest.items() if client in sampled]
            were_not = [loss for client, loss in newest.items() if client not in sampled]
            if not (were and were_not):
                return None
            return record["round"], len(were), statistics.fmean(were), len(were_not), statistics.fmean(were_not)
    return None


def releases(histories: list[list[dict]]) -> tuple[float, float]:
    """The mean norm of what clients released (the finite releases: a non-finite one is rejected by the
    server), and how many releases the server rejected in a run, on average over the runs."""
    norms = [norm for h in histories for r in h for norm in r.get("update_norm", {}).values() if math.isfinite(norm)]
    return statistics.fmean(norms), statistics.fmean(sum(len(r.get("rejected", {})) for r in h) for h in histories)


def summarise(setting: Setting, levels: list[str], seeds: list[int]) -> None:
    """The privacy-utility table and plot over every level published so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, points, baseline, initial, better, devices, early = [], {}, {}, None, [], set(), []
    for level in levels:
        for variant in VARIANTS:
            label = variant.replace("@", "+")
            runs = [RESULTS / setting.level(level) / "runs" / f"{label}-s{seed}" for seed in seeds]
            histories = [read_history(run) for run in runs if (run / "metrics.jsonl").is_file()]
            if len(histories) < len(seeds):
                continue
            initial = statistics.fmean(h[0]["mean_local_loss"] for h in histories)
            last = [h[-1] for h in histories]
            wall = statistics.fmean(sum(r.get("wall_seconds", 0.0) for r in h) for h in histories)
            local = statistics.fmean(r["mean_local_loss"] for r in last)
            selected = statistics.fmean(r.get("selected", r)["mean_local_loss"] for r in last)
            eps = [r.get("max_epsilon", 0.0) for r in last]
            released, rejected = releases(histories)
            baseline.setdefault(variant, wall) if level == "none" else None
            sigma = load_config(runs[0] / "config.toml").privacy.noise_multiplier
            devices |= set(json.loads((RESULTS / setting.level(level) / "run.json").read_text())["trained_on"].values())
            rows.append(f"| {variant} | {level} | {sigma:.3g} | {min(min(r.get('epsilon', {0: 0}).values()) for r in last):.2f}"
                        f" – {statistics.fmean(eps):.2f} | {released:.3g} | {rejected:g} | {local:.3f} | {selected:.3f} | "
                        f"{statistics.fmean(r.get('mean_global_loss', float('nan')) for r in last):.3f} | "
                        f"{statistics.fmean(r.get('mean_rouge_l', float('nan')) for r in last):.3f} | {wall / 60:.1f} | "
                        f"{wall / baseline[variant] - 1:+.1%} |" if variant in baseline else "")
            points.setdefault(variant, []).append((statistics.fmean(eps) if level != "none" else None, local))
            if level != "none" and local < initial:
                better.append(f"{variant} at ε {level}")
            split = sampled_split(histories[0])
            if split is not None:
                round_, sampled, sampled_loss, others, others_loss = split
                early.append(f"| {variant} | {level} | {round_} | {sampled} | {sampled_loss:.3f} | {others} | {others_loss:.3f} |")
    lines = [f"# What privacy costs: MIRA and FedIT on {setting.title}", "",
             f"{setting.description}; seeds {seeds}; trained on "
             f"{'; '.join(sorted(devices))}. ε is each client's (RDP accountant, dp-accounting), min – max over clients; "
             "the run without privacy has none. Released norm: the mean L2 norm of what a client sent (its clipped "
             "update plus the noise; without privacy, the update itself), over the finite releases. Rejected: releases "
             "the server refused (non-finite, or over a norm bound; the client keeps its last good adapter), in a "
             "run. Loss: mean local test loss of the final "
             "adapters, and of each client's validation-selected adapter (lower is better). Wall times were "
             "measured beside other runs on the same cores, so their differences are mostly load.", "",
             f"Before training (round 0) the mean local test loss is {initial:.3f}.", "",
             "| variant | target ε | σ | ε | released norm | rejected | local loss | selected | global loss | ROUGE-L | "
             "wall min | wall vs no privacy |", "|---|---|---|---|---|---|---|---|---|---|---|---|", *[r for r in rows if r],
             "", "Private runs that end below the untrained model's loss: " + (", ".join(better) or "none") + ". "
             "Per coordinate the noise has std σ·C, so its norm is about σ·C·√d for d adapter values "
             "(the released norm above) against a clipped update of norm at most C: each client's release is "
             "almost all noise unless d is small or many clients' releases are averaged."]
    if early:
        lines += ["", f"At the first evaluation (seed {seeds[0]}), the clients sampled so far against those not yet "
                  "sampled, each at its newest local test loss: where only sampled clients change (MIRA), the mean "
                  "rises with the share of clients sampled; FedIT sends its average to every client.", "",
                  "| variant | target ε | round | sampled | their loss | not yet sampled | their loss |",
                  "|---|---|---|---|---|---|---|", *early]
    target = RESULTS / setting.name
    target.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for variant, values in points.items():
        private = sorted((e, loss) for e, loss in values if e is not None)
        if private:
            axes.plot([e for e, _ in private], [loss for _, loss in private], "o-", label=variant)
        for e, loss in values:
            if e is None:
                axes.axhline(loss, linestyle="--", linewidth=0.8, color=axes.lines[-1].get_color() if private else None,
                             label=f"{variant}, no privacy")
    if initial is not None:
        axes.axhline(initial, linestyle=":", color="grey", label="before training")
    axes.set_xscale("log")
    ticks = sorted({e for values in points.values() for e, _ in values if e is not None})
    axes.set_xticks(ticks, [f"{e:.3g}" for e in ticks])
    axes.minorticks_off()
    axes.set_xlabel(f"largest client ε (δ = 1/{round(1 / setting.delta)})")
    axes.set_ylabel("mean local test loss")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(target / "loss_vs_epsilon.png", dpi=120)
    lines += ["", "![loss against ε](loss_vs_epsilon.png)", "",
              "Per-level tables (per-client losses, ε per client in each sub-run's metrics.jsonl): "
              + ", ".join(f"[{setting.level(level)}](../{setting.level(level)}/results.md)" for level in levels) + "."]
    (target / "README.md").write_text("\n".join(lines) + "\n")
    (target / "summary.json").write_text(json.dumps({"levels": levels, "seeds": seeds, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
