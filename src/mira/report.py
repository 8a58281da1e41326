"""`mira report`: tables (Markdown, CSV) and plots from the saved metrics of a comparison."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .config import flatten
from .errors import MiraError
from .results import CLIENTS_JSON, COMPARISON_JSON, is_finished, label, read_history

log = logging.getLogger(__name__)
SUBRUN = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")


@dataclass
class VariantRuns:
    """All seeds of one algorithm variant: one metrics history per seed."""

    label: str
    seeds: list[int]
    histories: list[list[dict]]

    def only(self, seeds: set[int]) -> VariantRuns:
        """These runs restricted to `seeds`."""
        kept = [(s, h) for s, h in zip(self.seeds, self.histories) if s in seeds]
        return VariantRuns(self.label, [s for s, _ in kept], [h for _, h in kept])

    def final(self, key: str, client: str | None = None) -> list[float]:
        """The last evaluated value of `key` (per client, or its mean) in every seed."""
        out = []
        for history in self.histories:
            record = next(r for r in reversed(history) if key in r or f"mean_{key}" in r)
            out.append(record[key].get(client, math.nan) if client else record[f"mean_{key}"])
        return out

    @property
    def has_selection(self) -> bool:
        return all("selected" in h[-1] for h in self.histories)

    def selected(self, key: str, client: str | None = None) -> list[float]:
        """`key` of the validation-selected adapters (per client, or its mean) in every seed."""
        return [h[-1]["selected"][key][client] if client else h[-1]["selected"][f"mean_{key}"] for h in self.histories]

    def curve(self, key: str, client: str | None = None) -> tuple[list[int], list[float], list[float]]:
        """Rounds where `key` was evaluated, and its mean and std over seeds."""
        rounds = [r["round"] for r in self.histories[0] if key in r]
        values = [[(r[key][client] if client else r[f"mean_{key}"]) for r in h if key in r] for h in self.histories]
        by_round = list(zip(*values))
        return rounds, [statistics.fmean(v) for v in by_round], [_std(v) for v in by_round]

    def bytes_per_client_round(self, key: str) -> float:
        """Bytes of the algorithm's messages one sampled client receives (key 'bytes_down') or sends
        back ('bytes_up') in a round."""
        first = next(r for r in self.histories[0] if r.get("sampled"))
        return first.get(key, 0) / len(first["sampled"])

    def total_bytes(self, keys=("bytes_up", "bytes_down")) -> float:
        return statistics.fmean(sum(r.get(key, 0) for r in h for key in keys) for h in self.histories)


def human_bytes(nbytes: float) -> str:
    """Bytes in MB, or in kB or B where that is too small to show (FedKSeed's seed scalars)."""
    if nbytes >= 1e5 or nbytes == 0:
        return f"{nbytes / 1e6:.3f} MB"
    return f"{nbytes / 1e3:.1f} kB" if nbytes >= 1e3 else f"{nbytes:.0f} B"


def _std(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def finished_subruns(comparison_dir: Path) -> list[tuple[str, int, Path]]:
    """(variant, seed, folder) of every finished sub-run <variant>-s<seed> of a comparison, by name."""
    subs = sorted(p for p in comparison_dir.iterdir() if p.is_dir() and is_finished(p))
    return [(m["variant"], int(m["seed"]), sub) for sub in subs if (m := SUBRUN.match(sub.name))]


def seeds_all_finished(comparison_dir: Path, seeds_by_variant: dict[str, set[int]]) -> set[int]:
    """The seeds every variant finished; ValueError when there is none."""
    seeds = set.intersection(*seeds_by_variant.values())
    if not seeds:
        raise MiraError(f"{comparison_dir}: no seed is finished for every variant "
                         f"({ {v: sorted(s) for v, s in seeds_by_variant.items()} }); finish the comparison first")
    return seeds


def load_comparison(comparison_dir: Path) -> tuple[list[VariantRuns], list[dict]]:
    """The finished sub-runs of a comparison, grouped by variant, and the clients.

    With the comparison's record (comparison.json) its variants come first, in the order asked, and
    must all be finished for its seeds; other variants found in the folder are added only when they
    have the same seeds. Without it (the archived sub-runs of a published comparison, say), every
    variant over the seeds all of them finished.
    """
    groups: dict[str, VariantRuns] = {}
    clients = None
    for variant, seed, sub in finished_subruns(comparison_dir):
        history = read_history(sub)
        if not history or "local_loss" not in history[-1]:
            continue
        group = groups.setdefault(variant, VariantRuns(variant, [], []))
        group.seeds.append(seed)
        group.histories.append(history)
        clients = clients or json.loads((sub / CLIENTS_JSON).read_text())
    if not groups:
        raise FileNotFoundError(f"{comparison_dir}: no finished runs named <algorithm>-s<seed> inside")
    record = comparison_dir / COMPARISON_JSON
    if record.is_file():
        asked = json.loads(record.read_text())
        seeds = set(asked["seeds"])
        unfinished = [v for v in asked["variants"] if v not in groups or not seeds <= set(groups[v].seeds)]
        if unfinished:
            raise MiraError(f"{comparison_dir}: {', '.join(unfinished)} not finished for seeds {sorted(seeds)}; "
                             "finish the comparison (mira compare again) before reporting")
        extra = [v for v in groups if v not in asked["variants"]]
        for v in extra:
            if not seeds <= set(groups[v].seeds):
                log.warning("report: leaving out %s (seeds %s, the comparison has %s)", v, sorted(groups[v].seeds),
                            sorted(seeds))
        order = asked["variants"] + [v for v in extra if seeds <= set(groups[v].seeds)]
        return [groups[v].only(seeds) for v in order], clients
    seeds = seeds_all_finished(comparison_dir, {v: set(g.seeds) for v, g in groups.items()})
    for g in groups.values():
        if set(g.seeds) - seeds:
            log.warning("report: leaving out %s's seeds %s (not finished by every variant)", g.label,
                        sorted(set(g.seeds) - seeds))
    return [g.only(seeds) for g in groups.values()], clients


def _pm(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {_std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def _client_table(variants: list[VariantRuns], clients: list[dict], values: dict, winners: dict) -> list[str]:
    """Per-client mean ± std of `values` (variant → client → per-seed values), the best in bold."""
    lines = ["| client | family | " + " | ".join(v.label for v in variants) + " |", "|---|---|" + "---|" * len(variants)]
    for c in clients:
        n = c["name"]
        cells = [(f"**{_pm(values[v.label][n])}**" if winners[n] == v.label else _pm(values[v.label][n]))
                 for v in variants]
        lines.append(f"| {n} | {c['family']} | " + " | ".join(cells) + " |")
    return lines


def crossover(rounds: list[int], loss: list[float], reference: list[float]) -> int | None:
    """The first of `rounds` from which `loss` stays below `reference` to the end (None: never)."""
    below = [a < b for a, b in zip(loss, reference)]
    if not below or not below[-1]:
        return None
    first = len(below)
    while first > 0 and below[first - 1]:
        first -= 1
    return rounds[first]


def _crossover(variant: VariantRuns, variants: list[VariantRuns]) -> str:
    """`crossover` of the variant's mean curve against FedIT's (and its range over seeds where several)."""
    if variant.label == "fedit":
        return "-"
    fedit = next(v for v in variants if v.label == "fedit")
    rounds, mean, _ = variant.curve("local_loss")
    _, reference, _ = fedit.curve("local_loss")
    per_seed = []
    for mine, theirs in zip(variant.histories, fedit.histories):
        ours = [r["mean_local_loss"] for r in mine if "local_loss" in r]
        per_seed.append(crossover(rounds, ours, [r["mean_local_loss"] for r in theirs if "local_loss" in r]))
    text = str(crossover(rounds, mean, reference) or "never")
    if len(per_seed) > 1:
        text += " (seeds: " + ", ".join(str(r or "never") for r in per_seed) + ")"
    return text


def _settings(comparison_dir: Path) -> dict[str, dict]:
    """The per-variant settings a comparison was run with (flattened keys), if any."""
    record = comparison_dir / COMPARISON_JSON
    params = json.loads(record.read_text()).get("params", {}) if record.is_file() else {}
    return {label(spec): flatten(p) for spec, p in params.items()}


def write_report(comparison_dir: str | Path) -> list[Path]:
    """Write results.md, results.csv and the PNG plots into `comparison_dir`; return their paths."""
    comparison_dir = Path(comparison_dir)
    variants, clients = load_comparison(comparison_dir)
    names = [c["name"] for c in clients]
    final_local = {v.label: {n: v.final("local_loss", n) for n in names} for v in variants}
    winners = {n: min(variants, key=lambda v: statistics.fmean(final_local[v.label][n])).label for n in names}
    has = {key: all(any(key in r for r in h) for v in variants for h in v.histories)
           for key in ("global_loss", "rouge_l")}

    with (comparison_dir / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "client", "family", "seeds", "final_local_loss_mean", "final_local_loss_std",
                         "final_global_loss_mean", "final_rouge_l_mean"])
        for v in variants:
            for c in clients:
                n = c["name"]
                writer.writerow([v.label, n, c["family"], len(v.seeds), f"{statistics.fmean(final_local[v.label][n]):.6g}",
                                 f"{_std(final_local[v.label][n]):.6g}",
                                 f"{statistics.fmean(v.final('global_loss', n)):.6g}" if has["global_loss"] else "",
                                 f"{statistics.fmean(v.final('rouge_l', n)):.6g}" if has["rouge_l"] else ""])

    seeds = ", ".join(map(str, sorted(variants[0].seeds)))
    selected = all(v.has_selection for v in variants)
    lines = [f"# Comparison: {comparison_dir.name}", "",
             f"Final per-client local test loss (lower is better), mean ± std over seeds {seeds}.", ""]
    lines += _client_table(variants, clients, final_local, winners)
    if selected:
        sel_local = {v.label: {n: v.selected("local_loss", n) for n in names} for v in variants}
        sel_winners = {n: min(variants, key=lambda v: statistics.fmean(sel_local[v.label][n])).label for n in names}
        lines += ["", "Local test loss of each client's validation-selected adapter (the round with its lowest "
                  "validation loss), mean ± std over seeds.", ""]
        lines += _client_table(variants, clients, sel_local, sel_winners)
    lines += ["", "| summary | " + " | ".join(v.label for v in variants) + " |", "|---|" + "---|" * len(variants),
              "| mean local loss | " + " | ".join(_pm(v.final("local_loss")) for v in variants) + " |"]
    if selected:
        lines.append("| mean local loss, selected | " + " | ".join(_pm(v.selected("local_loss")) for v in variants) + " |")
    if has["global_loss"]:
        lines.append("| mean global loss | " + " | ".join(_pm(v.final("global_loss")) for v in variants) + " |")
        if selected:
            lines.append("| mean global loss, selected | "
                         + " | ".join(_pm(v.selected("global_loss")) for v in variants) + " |")
    if has["rouge_l"]:
        lines.append("| mean ROUGE-L | " + " | ".join(_pm(v.final("rouge_l")) for v in variants) + " |")
        if selected:
            lines.append("| mean ROUGE-L, selected | " + " | ".join(_pm(v.selected("rouge_l")) for v in variants) + " |")
    lines.append("| clients won (lowest local loss) | "
                 + " | ".join(str(sum(w == v.label for w in winners.values())) for v in variants) + " |")
    if selected:
        lines.append("| clients won, selected | "
                     + " | ".join(str(sum(w == v.label for w in sel_winners.values())) for v in variants) + " |")
    lines.append("| bytes per sampled client per round, received / sent | "
                 + " | ".join(f"{human_bytes(v.bytes_per_client_round('bytes_down'))} / "
                              f"{human_bytes(v.bytes_per_client_round('bytes_up'))}" for v in variants) + " |")
    lines.append("| bytes sent + received, whole run | "
                 + " | ".join(human_bytes(v.total_bytes()) for v in variants) + " |")
    if any(v.total_bytes(["bytes_state"]) for v in variants):
        lines.append("| clients' private state carried for stateless nodes, whole run | "
                     + " | ".join(human_bytes(v.total_bytes(["bytes_state"])) for v in variants) + " |")
    if any("max_epsilon" in h[-1] for v in variants for h in v.histories):
        lines.append("| privacy ε, largest over clients (at each client's δ) | "
                     + " | ".join(_pm([h[-1]["max_epsilon"] for h in v.histories]) if "max_epsilon" in v.histories[0][-1]
                                  else "not private" for v in variants) + " |")
    if "fedit" in [v.label for v in variants]:
        lines.append("| first evaluated round from which its mean local loss stays below FedIT's | "
                     + " | ".join(_crossover(v, variants) for v in variants) + " |")
    params = _settings(comparison_dir)
    if params:
        lines += ["", "Settings per variant (from `mira compare --params`):", ""]
        lines += [f"- {label}: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                             for k, v in flat.items()) for label, flat in params.items()]
    curves = [v.curve("local_loss") for v in variants]
    lines += ["", "Mean local test loss at every evaluated round (mean ± std over seeds).", "",
              "| round | " + " | ".join(v.label for v in variants) + " |", "|---|" + "---|" * len(variants)]
    for i, round_ in enumerate(curves[0][0]):
        lines.append(f"| {round_} | " + " | ".join(f"{mean[i]:.3f} ± {std[i]:.3f}" for _, mean, std in curves) + " |")
    families = sorted({c["family"] for c in clients})
    if 1 < len(families) < len(clients):
        lines += ["", "Final local test loss by client family (mean over the family's clients, then over seeds; "
                  "clients won in brackets).", "", "| family | clients | " + " | ".join(v.label for v in variants) + " |",
                  "|---|---|" + "---|" * len(variants)]
        for family in families:
            members = [c["name"] for c in clients if c["family"] == family]
            cells = [f"{statistics.fmean(statistics.fmean(final_local[v.label][n]) for n in members):.3f} "
                     f"({sum(winners[n] == v.label for n in members)})" for v in variants]
            lines.append(f"| {family} | {len(members)} | " + " | ".join(cells) + " |")
    lines += ["", "Plots: `mean_local_loss.png`, `local_loss_per_client.png`, `final_local_loss.png`"
              + (", `global_loss.png`" if has["global_loss"] else "") + "."]
    (comparison_dir / "results.md").write_text("\n".join(lines) + "\n")
    return [comparison_dir / "results.md", comparison_dir / "results.csv",
            *plot(comparison_dir, variants, clients, final_local, has["global_loss"])]


def plot(out: Path, variants: list[VariantRuns], clients: list[dict], final_local: dict,
         with_global: bool) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = []
    names = [c["name"] for c in clients]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, c in zip(axes.flat, clients):
        for v in variants:
            x, mean, std = v.curve("local_loss", c["name"])
            ax.plot(x, mean, marker="o", label=v.label)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        ax.set_title(textwrap.fill(f"{c['name']} ({c['family']})", 44), fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("local test loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    spare = list(axes.flat)[len(names):]
    for ax in spare:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    (spare[0] if spare else axes.flat[0]).legend(handles, labels, loc="center" if spare else "best")
    fig.suptitle("Per-client local test loss (mean ± std over seeds)")
    fig.tight_layout()
    paths.append(out / "local_loss_per_client.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.9 * len(names) * len(variants) / 2)), 4.5))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        means = [statistics.fmean(final_local[v.label][n]) for n in names]
        errs = [_std(final_local[v.label][n]) for n in names]
        ax.bar([j + i * width for j in range(len(names))], means, width, yerr=errs, capsize=2, label=v.label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n[:44] for n in names], rotation=35, ha="right", fontsize=8)
    ax.set_xlabel("client")
    ax.set_ylabel("final local test loss")
    ax.set_title("Final local test loss per client (mean ± std over seeds)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    paths.append(out / "final_local_loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    def mean_curves(key: str, ylabel: str, title: str, name: str) -> None:
        """The mean of `key` over clients against the round, one line per variant, ± std over seeds."""
        fig, ax = plt.subplots(figsize=(6, 4))
        for v in variants:
            x, mean, std = v.curve(key)
            ax.errorbar(x, mean, yerr=std, marker="o", markersize=3, capsize=3, label=v.label)
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    mean_curves("local_loss", "mean local test loss", "Mean local test loss over clients (± std over seeds)",
                "mean_local_loss.png")
    if with_global:
        mean_curves("global_loss", "mean global test loss", "Global loss (each client's model on all test sets)",
                    "global_loss.png")
    return paths
