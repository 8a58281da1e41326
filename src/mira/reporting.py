"""`mira report`: tables (Markdown, CSV) and plots from the saved metrics of a comparison.

The records of a comparison's finished sub-runs become pandas DataFrames (`Comparison.finals`: one row
per variant, seed and client; `Comparison.runs`: one per variant, seed and evaluated round); the
statistics are their group-bys, the Markdown tables their `to_markdown`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import textwrap
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from .config import flatten
from .errors import MiraError
from .results import CLIENTS_JSON, COMPARISON_JSON, is_finished, label, read_history

log = logging.getLogger(__name__)
SUBRUN = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")
METRICS = ("local_loss", "global_loss", "rouge_l")
"""The test metrics of the tables: each client's, at the last round that evaluated it."""


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


def human_bytes(nbytes: float) -> str:
    """Bytes in MB, or in kB or B where that is too small to show (FedKSeed's seed scalars)."""
    if nbytes >= 1e5 or nbytes == 0:
        return f"{nbytes / 1e6:.3f} MB"
    return f"{nbytes / 1e3:.1f} kB" if nbytes >= 1e3 else f"{nbytes:.0f} B"


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


def crossover(rounds: list[int], loss: list[float], reference: list[float]) -> int | None:
    """The first of `rounds` from which `loss` stays below `reference` to the end (None: never)."""
    below = [a < b for a, b in zip(loss, reference)]
    if not below or not below[-1]:
        return None
    first = len(below)
    while first > 0 and below[first - 1]:
        first -= 1
    return rounds[first]


def _pm(values: pd.Series) -> str:
    """'mean ± std' over seeds (the mean alone for one seed)."""
    return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values.iloc[0]:.3f}"


def _markdown(frame: pd.DataFrame) -> list[str]:
    return frame.to_markdown(index=False, disable_numparse=True).splitlines()


class Comparison:
    """The results of a comparison folder's finished sub-runs (`mira.compare` returns one, `mira.report`
    writes its tables and plots)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.variants, self.clients = load_comparison(self.path)
        self.labels = [v.label for v in self.variants]

    @cached_property
    def finals(self) -> pd.DataFrame:
        """One row per variant, seed and client: the client's final local and global test loss and
        ROUGE-L (at the last round that evaluated each), and the same of its validation-selected adapter
        (`selected_*`) where the runs had validation data."""
        rows = []
        for v in self.variants:
            for seed, history in zip(v.seeds, v.histories):
                last = {key: next((r[key] for r in reversed(history) if key in r), {}) for key in METRICS}
                selected = history[-1].get("selected", {})
                for c in self.clients:
                    n = c["name"]
                    rows.append({"variant": v.label, "seed": seed, "client": n, "family": c["family"]}
                                | {key: last[key].get(n, math.nan) for key in METRICS}
                                | {f"selected_{key}": selected[key].get(n, math.nan)
                                   for key in METRICS if key in selected})
        return pd.DataFrame(rows)

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per variant, seed and evaluated round: the means over clients (`mean_local_loss`, ...)
        as the round's record has them, its traffic and, in the last round's rows, the selected adapters'
        means (`selected_mean_*`) and the largest privacy ε."""
        rows = []
        for v in self.variants:
            for seed, history in zip(v.seeds, v.histories):
                sampled = next((r for r in history if r.get("sampled")), {})
                bytes_per_client = {f"{key}_per_client": sampled.get(key, 0) / max(len(sampled.get("sampled", ())), 1)
                                    for key in ("bytes_down", "bytes_up")}
                totals = {f"total_{key}": sum(r.get(key, 0) for r in history)
                          for key in ("bytes_down", "bytes_up", "bytes_state")}
                for r in history:
                    if "local_loss" not in r:
                        continue
                    row = {"variant": v.label, "seed": seed, "round": r["round"], **bytes_per_client, **totals}
                    row |= {f"mean_{key}": r[f"mean_{key}"] for key in METRICS if f"mean_{key}" in r}
                    if r is history[-1]:
                        row |= {f"selected_mean_{key}": r["selected"][f"mean_{key}"]
                                for key in METRICS if f"mean_{key}" in r.get("selected", {})}
                        row["max_epsilon"] = r.get("max_epsilon", math.nan)
                    rows.append(row)
        return pd.DataFrame(rows)

    @cached_property
    def client_losses(self) -> pd.DataFrame:
        """One row per variant, seed, evaluated round and client: the client's local test loss."""
        return pd.DataFrame([{"variant": v.label, "seed": seed, "round": r["round"], "client": n, "local_loss": loss}
                             for v in self.variants for seed, history in zip(v.seeds, v.histories)
                             for r in history if "local_loss" in r for n, loss in r["local_loss"].items()])

    @property
    def has_selection(self) -> bool:
        return "selected_local_loss" in self.finals and self.finals["selected_local_loss"].notna().all()

    def has(self, metric: str) -> bool:
        """Whether every run evaluated `metric` (global_loss, rouge_l)."""
        return f"mean_{metric}" in self.runs and self.runs.groupby(["variant", "seed"])[f"mean_{metric}"].count().gt(0).all()

    def per_client(self, metric: str = "local_loss") -> pd.DataFrame:
        """Mean over seeds of a column of `finals` (e.g. 'local_loss', 'selected_local_loss'): one row
        per client, one column per variant (in the comparison's order)."""
        table = self.finals.pivot_table(index="client", columns="variant", values=metric, aggfunc="mean", dropna=False)
        return table.loc[[c["name"] for c in self.clients], self.labels]

    def winners(self, metric: str = "local_loss") -> pd.Series:
        """For each client, the variant with the lowest mean `metric` (the first in order on a tie)."""
        return self.per_client(metric).idxmin(axis="columns")

    def final(self) -> pd.DataFrame:
        """The last round of every run: one row per variant and seed (the columns of `runs`)."""
        return self.runs.groupby(["variant", "seed"], sort=False).tail(1)

    def curves(self, column: str = "mean_local_loss") -> pd.DataFrame:
        """`column` of `runs` against the round: mean and std over seeds, one column pair per variant."""
        table = self.runs.pivot_table(index="round", columns="variant", values=column, aggfunc=["mean", "std"],
                                    dropna=False)
        return table.reindex(columns=self.labels, level=1)

    def crossover(self, variant: str, reference: str = "fedit") -> str:
        """The first evaluated round from which `variant`'s mean local loss stays below `reference`'s
        (seed means; each seed's own where several), or 'never'."""
        curves = self.runs.pivot_table(index=["seed", "round"], columns="variant", values="mean_local_loss")
        mean = curves.groupby("round").mean()
        text = str(crossover(list(mean.index), list(mean[variant]), list(mean[reference])) or "never")
        seeds = curves.index.get_level_values("seed").unique()
        if len(seeds) > 1:
            per_seed = [crossover(list(c.index.get_level_values("round")), list(c[variant]), list(c[reference]))
                        for _, c in curves.groupby("seed")]
            text += " (seeds: " + ", ".join(str(r or "never") for r in per_seed) + ")"
        return text

    def _client_table(self, metric: str) -> list[str]:
        """Per-client mean ± std over seeds of `metric`, the best of each client in bold."""
        cells = self.finals.groupby(["client", "variant"], sort=False)[metric].agg(_pm).unstack()
        winners = self.winners(metric)
        rows = [{"client": c["name"], "family": c["family"]}
                | {v: f"**{cells.at[c['name'], v]}**" if winners[c["name"]] == v else cells.at[c["name"], v]
                   for v in self.labels} for c in self.clients]
        return _markdown(pd.DataFrame(rows))

    def summary(self) -> pd.DataFrame:
        """The summary table: one row per statistic, one column per variant."""
        final = self.final().groupby("variant", sort=False)
        rows = {"mean local loss": final["mean_local_loss"].agg(_pm)}
        selected = self.has_selection
        for metric, name in (("local_loss", "local loss"), ("global_loss", "global loss"), ("rouge_l", "ROUGE-L")):
            if metric != "local_loss" and self.has(metric):
                rows[f"mean {name}"] = final[f"mean_{metric}"].agg(_pm)
            if selected and (metric == "local_loss" or self.has(metric)):
                rows[f"mean {name}, selected"] = final[f"selected_mean_{metric}"].agg(_pm)
        won = self.winners().value_counts().reindex(self.labels, fill_value=0)
        rows["clients won (lowest local loss)"] = won.astype(str)
        if selected:
            rows["clients won, selected"] = self.winners("selected_local_loss").value_counts().reindex(
                self.labels, fill_value=0).astype(str)
        traffic = final[["bytes_down_per_client", "bytes_up_per_client", "total_bytes_down", "total_bytes_up",
                         "total_bytes_state"]].mean()
        rows["bytes per sampled client per round, received / sent"] = traffic.apply(
            lambda t: f"{human_bytes(t['bytes_down_per_client'])} / {human_bytes(t['bytes_up_per_client'])}", axis=1)
        rows["bytes sent + received, whole run"] = (traffic["total_bytes_down"] + traffic["total_bytes_up"]).map(human_bytes)
        if traffic["total_bytes_state"].any():
            rows["clients' private state carried for stateless nodes, whole run"] = traffic["total_bytes_state"].map(
                human_bytes)
        epsilon = final["max_epsilon"]
        if epsilon.count().any():
            rows["privacy ε, largest over clients (at each client's δ)"] = epsilon.agg(
                lambda e: _pm(e) if e.notna().all() else "not private")
        if "fedit" in self.labels:
            rows["first evaluated round from which its mean local loss stays below FedIT's"] = pd.Series(
                {v: "-" if v == "fedit" else self.crossover(v) for v in self.labels})
        table = pd.DataFrame(rows).T.reindex(columns=self.labels)
        return table.rename_axis("summary").reset_index()

    def _families(self) -> list[str]:
        """Final local loss by client family (mean over its clients, then over seeds), clients won."""
        families = pd.DataFrame([{"client": c["name"], "family": c["family"]} for c in self.clients])
        if not 1 < families["family"].nunique() < len(self.clients):
            return []
        loss = self.per_client().join(families.set_index("client")).groupby("family")[self.labels].mean()
        won = pd.crosstab(families.set_index("client")["family"], self.winners()).reindex(
            columns=self.labels, fill_value=0)
        table = loss.apply(lambda col: col.map("{:.3f}".format)) + won.apply(lambda col: col.map(" ({})".format))
        table.insert(0, "clients", families.groupby("family").size())
        return ["", "Final local test loss by client family (mean over the family's clients, then over seeds; "
                "clients won in brackets).", "", *_markdown(table.reset_index())]

    def _settings(self) -> list[str]:
        record = self.path / COMPARISON_JSON
        params = json.loads(record.read_text()).get("params", {}) if record.is_file() else {}
        params = {spec: p for spec, p in params.items() if label(spec) in self.labels}
        if not params:
            return []
        return ["", "Settings per variant (from `mira compare --params`):", ""] + [
            f"- {label(spec)}: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                            for k, v in flatten(p).items()) for spec, p in params.items()]

    def markdown(self) -> str:
        """results.md: the per-client tables, the summary, the settings, the curve and the families."""
        seeds = ", ".join(map(str, sorted(self.variants[0].seeds)))
        lines = [f"# Comparison: {self.path.name}", "",
                 f"Final per-client local test loss (lower is better), mean ± std over seeds {seeds}.", "",
                 *self._client_table("local_loss")]
        if self.has_selection:
            lines += ["", "Local test loss of each client's validation-selected adapter (the round with its lowest "
                      "validation loss), mean ± std over seeds.", "", *self._client_table("selected_local_loss")]
        lines += ["", *_markdown(self.summary()), *self._settings()]
        curves = self.curves()
        cells = pd.DataFrame({v: [f"{m:.3f} ± {0 if math.isnan(s) else s:.3f}" for m, s in
                                  zip(curves["mean", v], curves["std", v])] for v in self.labels}, index=curves.index)
        lines += ["", "Mean local test loss at every evaluated round (mean ± std over seeds).", "",
                  *_markdown(cells.reset_index()), *self._families(),
                  "", "Plots: `mean_local_loss.png`, `local_loss_per_client.png`, `final_local_loss.png`"
                  + (", `global_loss.png`" if self.has("global_loss") else "") + "."]
        return "\n".join(lines) + "\n"

    def csv(self) -> pd.DataFrame:
        """results.csv: per variant and client, the final local loss (mean, std over seeds), global loss
        and ROUGE-L (means)."""
        grouped = self.finals.groupby(["variant", "client"], sort=False)
        table = grouped.agg(family=("family", "first"), seeds=("seed", "count"),
                            final_local_loss_mean=("local_loss", "mean"), final_local_loss_std=("local_loss", "std"),
                            final_global_loss_mean=("global_loss", "mean"), final_rouge_l_mean=("rouge_l", "mean"))
        table["final_local_loss_std"] = table["final_local_loss_std"].fillna(0.0)
        for metric in ("global_loss", "rouge_l"):
            if not self.has(metric):
                table[f"final_{metric}_mean"] = math.nan
        return table.reset_index()

    def write(self) -> list[Path]:
        """Write results.md, results.csv and the PNG plots into the comparison folder; return their paths."""
        (self.path / "results.md").write_text(self.markdown())
        self.csv().to_csv(self.path / "results.csv", index=False, float_format="%.6g")
        return [self.path / "results.md", self.path / "results.csv", *self.plot()]

    def plot(self, out: str | Path | None = None) -> list[Path]:
        """The PNG plots (per-client curves, final loss per client, mean local and global loss against the
        round) into `out` (default: the comparison folder); return their paths."""
        return plot(Path(out or self.path), self)


def plot(out: Path, comparison: Comparison) -> list[Path]:
    """The comparison's PNG plots into `out`; their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths, clients, labels = [], comparison.clients, comparison.labels
    names = [c["name"] for c in clients]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    by_client = comparison.client_losses.groupby(["client", "variant", "round"])["local_loss"].agg(["mean", "std"])
    for ax, c in zip(axes.flat, clients):
        for v in labels:
            curve = by_client.loc[(c["name"], v)].fillna({"std": 0.0})
            ax.plot(curve.index, curve["mean"], marker="o", label=v)
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"], alpha=0.2)
        ax.set_title(textwrap.fill(f"{c['name']} ({c['family']})", 44), fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("local test loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    spare = list(axes.flat)[len(names):]
    for ax in spare:
        ax.axis("off")
    handles, legend = axes.flat[0].get_legend_handles_labels()
    (spare[0] if spare else axes.flat[0]).legend(handles, legend, loc="center" if spare else "best")
    fig.suptitle("Per-client local test loss (mean ± std over seeds)")
    fig.tight_layout()
    paths.append(out / "local_loss_per_client.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.9 * len(names) * len(labels) / 2)), 4.5))
    final = comparison.finals.groupby(["variant", "client"])["local_loss"].agg(["mean", "std"]).fillna({"std": 0.0})
    width = 0.8 / len(labels)
    for i, v in enumerate(labels):
        bars = final.loc[v].loc[names]
        ax.bar([j + i * width for j in range(len(names))], bars["mean"], width, yerr=bars["std"], capsize=2, label=v)
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

    def mean_curves(column: str, ylabel: str, title: str, name: str) -> None:
        """`column` (a mean over clients) against the round, one line per variant, ± std over seeds."""
        curves = comparison.curves(column)
        fig, ax = plt.subplots(figsize=(6, 4))
        for v in labels:
            ax.errorbar(curves.index, curves["mean", v], yerr=curves["std", v].fillna(0.0), marker="o", markersize=3,
                        capsize=3, label=v)
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    mean_curves("mean_local_loss", "mean local test loss", "Mean local test loss over clients (± std over seeds)",
                "mean_local_loss.png")
    if comparison.has("global_loss"):
        mean_curves("mean_global_loss", "mean global test loss", "Global loss (each client's model on all test sets)",
                    "global_loss.png")
    return paths
