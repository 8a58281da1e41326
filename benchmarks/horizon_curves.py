"""Mean local test loss against the round for the 60-round paper-preset runs recorded under
benchmarks/results/paper-ni-60/ (finished sub-runs in runs/, unfinished ones in partial/): the Fig. 3
analogue, the table and the plot, written to that folder's README.md and mean_local_loss.png.

    python benchmarks/horizon_curves.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "paper-ni-60"


def curves() -> dict[str, dict[int, float]]:
    out = {}
    for folder in sorted([*RESULTS.glob("runs/*"), *RESULTS.glob("partial/*")]):
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        label = folder.name + (" (unfinished)" if folder.parent.name == "partial" else "")
        out[label] = {r["round"]: r["mean_local_loss"] for r in records if "mean_local_loss" in r}
    return out


def main() -> None:
    data = curves()
    rounds = sorted({r for c in data.values() for r in c})
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, curve in data.items():
        axes.plot(list(curve), list(curve.values()), marker="o", markersize=3, label=label)
    axes.set_xlabel("round")
    axes.set_ylabel("mean local test loss (80 clients)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "mean_local_loss.png", dpi=110)
    lines = ["| round | " + " | ".join(data) + " |", "|---|" + "---|" * len(data)]
    lines += [f"| {r} | " + " | ".join(f"{c[r]:.3f}" if r in c else "-" for c in data.values()) + " |" for r in rounds]
    print("\n".join(lines))
    (RESULTS / "curves.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
