"""The fair verdict: every algorithm tuned on validation loss with the same budget (`mira tune`, seed 0),
then compared over seeds with its tuned settings (`mira compare --params`), final and
validation-selected test numbers side by side. Results go to benchmarks/results/verdict-<dataset>/.

    python benchmarks/verdict.py --dataset ni --stage tune      # then --stage compare, then --stage report
    python benchmarks/verdict.py --dataset ni                   # all three stages in one go

Two single-threaded processes use both cores: run the stages with disjoint --algorithms subsets side
by side (OMP_NUM_THREADS=1), then `--stage report` with the full list. Every stage resumes where it
stopped; the tuning study and the comparison's sub-runs live under runs/benchmarks/. The study is
copied to the results folder after every trial, and each finished sub-run's record (metrics, no
adapters) to its runs/ folder, so a search or comparison begun on another machine, or in a checkout
since deleted, continues from them (a trial or sub-run that was running there starts again).
`--report-dir` writes the report of a subset of the variants elsewhere than the results folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_real import DATASETS, ROOT, compare_kept, device_name  # noqa: E402
from mira.comparison import read_params  # noqa: E402
from mira.config import load_config  # noqa: E402
from mira.reporting import Comparison  # noqa: E402
from mira.tuning import BEST_PARAMS, STUDY_DB, tune, write_tables  # noqa: E402

ALGORITHMS = "mira@ground_truth,mira@learned,fedit,local,ditto,fedsa_lora"
# Natural Instructions: 4 families x 2 tasks (the prototype's odd-man-out, SCAN and country pairs,
# and ToM QA); all 16 files do not fit the CPU budget of 3 seeds x 6 tuned variants.
NI_TASKS = ["task141_odd-man-out_classification_category", "task142_odd-man-out_classification_no_category",
            "task126_scan_structured_text_generation_command_action_all",
            "task128_scan_structured_text_generation_command_action_short",
            "task1146_country_capital", "task1321_country_continent",
            "task151_tomqa_find_location_easy_clean", "task152_tomqa_find_location_easy_noise"]
SUBSETS = {"ni": ["data.tasks=" + json.dumps(NI_TASKS)], "dolly": ["eval.global_loss=true"]}
# Data-poor clients, every client trained every round: 32 training, 16 validation and 16 test
# examples each; 3 rounds x 4 local steps of 8 examples; validation (and test) after every round.
BUDGET = ["train.batch_size=8", "data.train_per_client=32", "data.val_per_client=16", "data.test_per_client=16",
          "model.max_length=128", "federation.rounds=3", "federation.sample_fraction=1.0", "train.local_steps=4", "eval.eval_every=1",
          "eval.generate_per_client=4", "eval.max_new_tokens=16", "model.autocast='bfloat16'"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["ni", "dolly"], required=True,
                        help="ni: 8 Natural Instructions tasks in 4 families; dolly: the Dolly-15k categories")
    parser.add_argument("--stage", choices=["tune", "compare", "report", "all"], default="all",
                        help="tune on validation, compare the tuned settings over seeds, write the report, "
                             "or all three")
    parser.add_argument("--algorithms", default=ALGORITHMS,
                        help="comma-separated variants: an algorithm, or mira@GRAPH for MIRA on graph GRAPH "
                             "(random, uniform, ground_truth, learned)")
    parser.add_argument("--trials", type=int, default=3, help="trials per variant (the same for every one)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the comparison")
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base model: smollm2-135m-instruct (embedded), tiny-random, a local directory, "
                             "a .gguf file or a Hub id")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides, as for mira run --set (recorded with the results)")
    parser.add_argument("--report-dir", type=Path, help="where the report goes (default: the results folder)")
    args = parser.parse_args()

    variants = args.algorithms.split(",")
    name = f"verdict-{args.dataset}"
    overrides = [*DATASETS[args.dataset], *SUBSETS[args.dataset], *BUDGET, f"model.name='{args.model}'",
                 f"out_dir='{ROOT / 'runs' / 'benchmarks'}'", *args.overrides]
    cfg = load_config(None, overrides + [f"name='{name}-tune'"])
    target = ROOT / "benchmarks" / "results" / name
    target.mkdir(parents=True, exist_ok=True)
    begin = time.time()
    tuned = cfg.run_dir
    if not (tuned / STUDY_DB).exists() and (target / STUDY_DB).exists():  # a search begun on another machine
        tuned.mkdir(parents=True, exist_ok=True)
        shutil.copy(target / STUDY_DB, tuned / STUDY_DB)

    def keep_study() -> None:
        write_tables(tuned)
        for path in ["trials.md", "trials.csv", BEST_PARAMS, STUDY_DB]:
            shutil.copy(tuned / path, target / path)

    if args.stage in ("tune", "all"):
        tune(cfg, variants, args.trials, seed=0, on_trial=keep_study)
    keep_study()
    if args.stage in ("compare", "report", "all"):
        seeds = [int(s) for s in args.seeds.split(",")]
        params = read_params(tuned / BEST_PARAMS, variants)
        out = compare_kept(load_config(None, overrides + [f"name='{name}'"]), variants, seeds, name, params)
        if args.stage != "compare":
            report_dir = args.report_dir or target
            report_dir.mkdir(parents=True, exist_ok=True)
            for path in Comparison(out).write() + [out / "config.toml"]:
                shutil.copy(path, report_dir / path.name)
            print((report_dir / "results.md").read_text())
    log = target / "run.json"
    logged = json.loads(log.read_text()) if log.is_file() else {"device": device_name()}  # the first stage's
    runs = logged.get("runs", [])
    runs.append({"stage": args.stage, "algorithms": variants, "seconds": round(time.time() - begin),
                 "device": device_name(), "command": "python " + shlex.join(["benchmarks/verdict.py", *sys.argv[1:]])})
    log.write_text(json.dumps({"device": logged["device"], "torch": torch.__version__, "overrides": overrides,
                               "runs": runs}, indent=1))
    print(f"results in {target}/")


if __name__ == "__main__":
    main()
