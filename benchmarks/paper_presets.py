"""The paper's regime (configs/paper_ni.toml: 80 clients each with its own NI task; configs/paper_dolly.toml:
80 Dolly clients from a Dirichlet split; 10 % sampled, batch 8, LoRA r = 16, Adam, random task weights) on
2 CPU cores with SmolLM2-135M, at one of two stated budgets:

--horizon 60 (the paper's 60 rounds): 2 local steps of 8 examples cut to 96 tokens, validation and local
  test loss of all 80 clients every 5 rounds, bfloat16 autocast where the CPU has it; 1-1.5 hours a
  variant on one core of an AVX512-BF16/AMX Xeon. Results go to benchmarks/results/paper-<preset>-60/.
--horizon 15 (the earlier reduced budget): 15 rounds of 2 local steps, examples cut to 128 tokens, 8
  validation and 8 test examples a client. Results go to benchmarks/results/paper-<preset>-reduced/
  (the NI records published there were made with the earlier NI preset, 16 tasks split over 5 clients
  each; their config.toml says so).

    python benchmarks/paper_presets.py --preset ni --horizon 60 --algorithms fedit,mira@random
    python benchmarks/paper_presets.py --preset dolly --algorithms mira@random,mira@learned,fedit,fedptuning,fedkseed

Settings are the presets' (untuned: lr 2e-3, η·λ = 0.5), or each variant's from --params (a
best_params.toml of `mira tune`). On NI mira@ground_truth is the category graph. Runs resume, and several
commands may run side by side (different variants or seeds): each records its sub-runs as they finish and
then publishes the largest complete table of what is recorded, every variant over the seeds that all of
them finished, whatever slice the command itself ran.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import ROOT, compare_kept, has_fast_bfloat16, publish  # noqa: E402
from mira.checkpoint import atomic_write_text  # noqa: E402
from mira.comparison import read_params  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.reporting import finished_subruns, seeds_all_finished  # noqa: E402
from mira.results import COMPARISON_JSON, spec_of  # noqa: E402

AUTOCAST = f"model.autocast='{'bfloat16' if has_fast_bfloat16() else 'none'}'"
BUDGETS = {
    # 15 of the paper's 60 rounds (a client is sampled 1.5 times on average), 2 local steps of 8 examples cut
    # to 128 tokens; 8 validation and 8 test examples a client; validation and local test loss of all 80
    # clients every 5 rounds; the global loss (a sample of 8 clients) and ROUGE-L (4 answers of 16 tokens a
    # client) at round 0 and the end.
    15: ["federation.rounds=15", "train.local_steps=2", "model.max_length=128", "eval.eval_every=5",
         "data.val_per_client=8", "data.test_per_client=8", "eval.global_loss_clients=8",
         "eval.max_new_tokens=16", AUTOCAST],
    # The paper's 60 rounds (a client is sampled 6 times on average), 2 local steps of 8 examples cut to 96
    # tokens, length-grouped; evaluation every 5 rounds on the preset's validation and test sets.
    60: ["federation.rounds=60", "train.local_steps=2", "model.max_length=96", "train.group_by_length=true",
         "eval.eval_every=5", "eval.max_new_tokens=16", AUTOCAST],
}
RESULTS = {15: "paper-{preset}-reduced", 60: "paper-{preset}-60"}


def report_everything_recorded(out: Path, published: Path) -> tuple[list[str], list[int]]:
    """Point the comparison's record in `out` at every finished variant, over the seeds all of them
    finished, in the order of the table published in `published` (new variants last); return them."""
    finished: dict[str, set[int]] = {}
    for variant, seed, _ in finished_subruns(out):
        finished.setdefault(variant, set()).add(seed)
    try:
        seeds = sorted(seeds_all_finished(out, finished))
    except ValueError as exc:
        raise SystemExit(f"{exc}; nothing to publish") from None
    table = published / "results.csv"
    order = list(dict.fromkeys(row["variant"] for row in csv.DictReader(table.open()))) if table.is_file() else []
    record = json.loads((out / COMPARISON_JSON).read_text())
    record |= {"variants": [v for v in order if v in finished] + sorted(set(finished) - set(order)), "seeds": seeds}
    atomic_write_text(out / COMPARISON_JSON, json.dumps(record))
    return record["variants"], seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["ni", "dolly"], required=True,
                        help="configs/paper_ni.toml or configs/paper_dolly.toml")
    parser.add_argument("--algorithms", default="mira@random,mira@learned,fedit",
                        help="comma-separated variants: an algorithm, or mira@GRAPH for MIRA on graph GRAPH "
                             "(random, uniform, ground_truth, learned)")
    parser.add_argument("--horizon", type=int, choices=sorted(BUDGETS), default=15,
                        help="rounds, with the budget stated above for each")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--params", help="per-variant settings (best_params.toml of mira tune)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides (recorded with the results)")
    args = parser.parse_args()
    name = RESULTS[args.horizon].format(preset=args.preset)
    overrides = [*BUDGETS[args.horizon], f"name='{name}'", f"out_dir='{ROOT / 'runs' / 'benchmarks'}'", *args.overrides]
    cfg = load_config(ROOT / "configs" / f"paper_{args.preset}.toml", overrides)
    variants = args.algorithms.split(",")
    params = read_params(args.params, variants) if args.params else None
    out = compare_kept(cfg, variants, [int(s) for s in args.seeds.split(",")], name, params)
    published, seeds = report_everything_recorded(out, ROOT / "benchmarks" / "results" / name)
    # run.json's command is the one that reproduces the published table, not this command's slice of it
    table = ["--preset", args.preset, "--horizon", str(args.horizon), "--algorithms", ",".join(map(spec_of, published)),
             "--seeds", ",".join(map(str, seeds)), *(["--params", args.params] if args.params else []),
             *(arg for override in args.overrides for arg in ("--set", override))]
    publish(out, name, overrides, "benchmarks/paper_presets.py", table)


if __name__ == "__main__":
    main()
