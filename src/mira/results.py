"""The files of a run directory: metrics (JSONL + CSV), the per-client summary table."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .callbacks import Callback
from .checkpoint import atomic_write_text
from .data import ClientData
from .errors import MiraError

METRICS_JSONL = "metrics.jsonl"
CLIENTS_JSON = "clients.json"
COMPARISON_JSON = "comparison.json"
ADAPTERS = "adapters"
"""The final adapters of a run; the folder appears (by a rename) only when the run has finished."""
SELECTED = "selected"
"""Inside ADAPTERS: each client's adapter of the round with its lowest validation loss."""
ARCHIVED = "archived.json"
"""In a finished run's record copied without its adapters (`archive_run`)."""
RECORD = (METRICS_JSONL, "metrics.csv", CLIENTS_JSON, "config.toml")


def label(spec: str) -> str:
    """A variant's name in folders and tables: 'mira@ground_truth' → 'mira+ground_truth'."""
    return spec.replace("@", "+")


def spec_of(label_: str) -> str:
    """The variant a name in folders and tables stands for, the inverse of `label`."""
    return label_.replace("+", "@")


def is_finished(run_dir: Path) -> bool:
    """Whether the run in `run_dir` trained all its rounds: it wrote its final adapters, or the folder
    is the archived record of such a run."""
    return (run_dir / ADAPTERS).is_dir() or (run_dir / ARCHIVED).is_file()


def archive_run(run_dir: Path, target: Path) -> None:
    """Copy a finished run's record (metrics, clients, config; not its adapters) to `target`, marked
    as archived: enough for `mira report` and for `mira compare` to count the run as done, where the
    run folder itself is gone (a benchmark keeps these beside its tables)."""
    if not is_finished(run_dir):
        raise MiraError(f"{run_dir}: the run has not finished; only finished runs are archived")
    target.mkdir(parents=True, exist_ok=True)
    for name in RECORD:
        if (run_dir / name).is_file():
            atomic_write_text(target / name, (run_dir / name).read_text())
    atomic_write_text(target / ARCHIVED, json.dumps({"run": run_dir.name}))


def write_clients(run_dir: Path, clients: list[ClientData]) -> None:
    """clients.json: the clients in row order of the federated state, with their families."""
    atomic_write_text(run_dir / CLIENTS_JSON, json.dumps([{"name": c.name, "family": c.family} for c in clients],
                                                         indent=1))


def read_history(run_dir: Path, up_to_round: int | None = None) -> list[dict]:
    """The per-round records of a run (up to and including `up_to_round`); a line cut short by a
    crash is dropped."""
    records = []
    path = run_dir / METRICS_JSONL
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if up_to_round is not None and record["round"] > up_to_round:
            break
        records.append(record)
    return records


class MetricsWriter(Callback):
    """Per-round metrics to metrics.jsonl (one record per round) and metrics.csv (one row per client): the
    round loop's first callback."""

    METRICS = ("train_loss", "val_loss", "local_loss", "global_loss", "rouge_l", "exact_match")
    COLUMNS = ["round", "client", "family", "sampled", *METRICS]

    def __init__(self, run_dir: Path, clients: list[ClientData], history: list[dict] = ()):
        """Start both files afresh, holding the records of `history` (a resumed run's past rounds)."""
        self.jsonl = run_dir / METRICS_JSONL
        self.csv = run_dir / "metrics.csv"
        self.clients = clients
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in history))
        atomic_write_text(self.csv, self._csv_text([self.COLUMNS], history))

    def _csv_text(self, header: list, records) -> str:
        rows = list(header)
        for record in records:
            rows += [[record["round"], c.name, c.family, c.name in record["sampled"],
                      *(_fmt(record.get(key, {}).get(c.name)) for key in self.METRICS)] for c in self.clients]
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue()

    def on_round_end(self, record: dict) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        with self.csv.open("a", newline="") as f:
            f.write(self._csv_text([], [record]))


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def summary_table(history: list[dict], clients: list[ClientData]) -> str:
    """Per-client local loss (and ROUGE-L, exact match) at round 0 and at the end, final global loss,
    and each client's privacy ε where the run was differentially private."""
    first = history[0]
    last = next(r for r in reversed(history) if "local_loss" in r)
    t = last["round"]
    columns = [(f"local@{r['round']}", r, "local_loss") for r in (first, last)]
    columns += [("global", last, "global_loss")]
    columns += [(f"rougeL@{r['round']}", r, "rouge_l") for r in (first, last)]
    columns += [(f"EM@{t}", last, "exact_match")]
    columns += [(f"eps@{history[-1]['round']}", history[-1], "epsilon")]
    columns = [c for c in columns if c[2] in c[1]]
    width = max(6, *(len(c.name) for c in clients))
    fam = max(6, *(len(c.family[:24]) for c in clients))
    rows = [f"{'client':<{width}} {'family':<{fam}} " + " ".join(f"{h:>9}" for h, _, _ in columns)]
    for c in clients:
        rows.append(f"{c.name:<{width}} {c.family[:24]:<{fam}} "
                    + " ".join(f"{r[key].get(c.name, math.nan):>9.3f}" for _, r, key in columns))
    rows.append(f"{'mean':<{width + fam + 1}} " + " ".join(f"{r['mean_' + key]:>9.3f}" for _, r, key in columns))
    return "\n".join(rows)
