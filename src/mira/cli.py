"""Command-line interface: `mira run | compare | tune | report | export | generate | config`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import tomli_w

from .config import ConfigError, choices, describe_options, describe_search_spaces, load_config, resume_config, to_dict
from .errors import MiraError


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="TOML config file (sections as listed below); defaults are used for what it omits")
    parser.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, e.g. --set federation.rounds=4 --set train.lr=1e-3 "
                             "(repeatable; applied after --config; values are TOML, bare words are strings)")


def build_parser() -> argparse.ArgumentParser:
    options = "configuration options (KEY = default):\n" + describe_options()
    parser = argparse.ArgumentParser(
        prog="mira", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Federated multi-task fine-tuning of LLMs with LoRA: MIRA (graph-regularised "
                    "personalised adapters) and its baselines, tuned and compared in one harness. "
                    "Algorithms: " + ", ".join(sorted(choices("federation.algorithm"))) + ".",
        epilog="Run 'mira COMMAND --help' for a command's options.")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=options,
                         help="train a federation and write metrics and adapters to OUT_DIR/NAME",
                         description="Run federated training. Writes config.toml, metrics.jsonl, "
                                     "metrics.csv and adapters/<client>.safetensors to <out_dir>/<name>/ "
                                     "and prints a per-client table of local and global test loss.")
    _add_config_args(run)
    run.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its last checkpoint, with its saved config "
                          "(--set may only raise federation.rounds or change checkpoint_every)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")

    cmp_ = sub.add_parser("compare", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=options,
                          help="run several algorithms x seeds on the same clients and report",
                          description="Run each algorithm for each seed on the same partitions, initial "
                                      "adapters and batches, into <out_dir>/<name>/<algorithm>-s<seed>/ (name defaults to 'compare'), then "
                                      "write results.md, results.csv and PNG plots there. Re-running it "
                                      "continues an interrupted comparison.")
    _add_config_args(cmp_)
    cmp_.add_argument("--algorithms", "-a", default="mira,fedit,local", metavar="LIST",
                      help="comma-separated algorithms (" + ", ".join(sorted(choices("federation.algorithm")))
                           + "); 'mira@ground_truth' (or @uniform, @random, @file, @learned) picks MIRA's task graph "
                           "(default: mira,fedit,local)")
    cmp_.add_argument("--seeds", default="0", metavar="LIST", help="comma-separated seeds (default: 0)")
    cmp_.add_argument("--params", metavar="FILE",
                      help="per-variant settings (best_params.toml written by 'mira tune'); every variant "
                           "compared must have a table there")
    cmp_.add_argument("--restart-changed", action="store_true",
                      help="train afresh every sub-run that was started (or finished) with other settings; "
                           "without it such a sub-run is an error naming the settings that differ")
    cmp_.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")

    tun = sub.add_parser("tune", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="search spaces:\n" + describe_search_spaces() + "\n\n" + options,
                         help="search each algorithm's hyper-parameters on validation loss (Optuna)",
                         description="Hyper-parameter search on validation loss only (the test sets are never "
                                     "read): for each variant, TRIALS Optuna trials (TPE sampler, median pruner "
                                     "on the intermediate validation losses) of the configured run on one seed, "
                                     "each algorithm in its own search space (listed below). Writes study.db "
                                     "(SQLite; optuna-dashboard opens it), trials.md, trials.csv and "
                                     "best_params.toml (for 'mira compare --params') to <out_dir>/<name>/ (name "
                                     "defaults to 'tune'). Re-running it continues an interrupted search.")
    _add_config_args(tun)
    tun.add_argument("--algorithms", "-a", default="mira,fedit,local", metavar="LIST",
                     help="comma-separated variants, as for 'mira compare' (default: mira,fedit,local)")
    tun.add_argument("--trials", type=int, default=4, metavar="N",
                     help="trials per variant, the same for every one (default: 4)")
    tun.add_argument("--seed", type=int, default=0, metavar="S", help="the seed tuned on (default: 0)")
    tun.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")

    rep = sub.add_parser("report", help="re-render a comparison's tables and plots from its saved metrics",
                         description="Write results.md, results.csv and the PNG plots of a comparison "
                                     "directory from its saved metrics, without training.")
    rep.add_argument("run_dir", metavar="COMPARISON_DIR", help="a directory written by 'mira compare'")

    export = sub.add_parser("export", help="write clients' adapters as standard PEFT adapter directories",
                            description="Write a client's adapter from RUN_DIR as a PEFT directory "
                                        "(adapter_config.json + adapter_model.safetensors) that loads with "
                                        "PeftModel.from_pretrained(base_model, DIR).")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/default")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--client", "-k", metavar="K", help="client name or index")
    which.add_argument("--all", action="store_true", help="every client, into OUT/<client>/")
    export.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory")
    export.add_argument("--selected", action="store_true",
                        help="the validation-selected adapter (each client's round of lowest validation loss) "
                             "instead of the final one")

    gen = sub.add_parser("generate", help="answer a prompt with one client's personalised model",
                         description="Greedy answer of client K's model (base + its LoRA adapter) to PROMPT, "
                                     "formatted with the run's prompt format.")
    gen.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/default")
    gen.add_argument("prompt", metavar="PROMPT", help="the instruction (and input) to answer")
    gen.add_argument("--client", "-k", required=True, metavar="K", help="client name or index")
    gen.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="longest answer (default 64)")

    show = sub.add_parser("config", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=options,
                          help="print the resolved configuration as TOML (a starting point for a config file)",
                          description="Print the configuration that 'mira run' would use, as TOML.")
    _add_config_args(show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score's import-time chatter
    try:
        if args.command in ("export", "generate"):
            return _use_run(args)
        if args.command == "report":
            return _report(Path(args.run_dir))
        if getattr(args, "resume", None):
            if args.config or args.overwrite:
                raise ConfigError("--resume uses the run's saved config.toml; it takes no --config or --overwrite")
            cfg = resume_config(args.resume, args.overrides)
        else:
            cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            print(tomli_w.dumps(to_dict(cfg)), end="")
            return 0
        if args.command == "compare":
            from .comparison import compare, read_params

            if cfg.name == "default":
                cfg.name = "compare"
            variants = _list(args.algorithms)
            params = read_params(args.params, variants) if args.params else None
            out = compare(cfg, variants, _int_list(args.seeds), progress=not args.no_progress, params=params,
                          restart=args.restart_changed)
            return _report(out)
        if args.command == "tune":
            from .tuning import tune

            if cfg.name == "default":
                cfg.name = "tune"
            out = tune(cfg, _list(args.algorithms), args.trials, args.seed, progress=not args.no_progress)
            print((out / "trials.md").read_text())
            print(f"best settings in {out / 'best_params.toml'}:\n{(out / 'best_params.toml').read_text()}")
            return 0
        from .results import summary_table
        from .simulation import run

        result = run(cfg, overwrite=args.overwrite, progress=not args.no_progress, resume=bool(args.resume))
    except (MiraError, OSError) as exc:  # bad input (ConfigError, DataError, GraphError, ...); missing or existing files
        print(f"mira: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(result.history, result.clients))
    print(f"results in {result.run_dir}/")
    return 0


def _list(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def _report(comparison_dir: Path) -> int:
    from .reporting import Comparison

    paths = Comparison(comparison_dir).write()
    print(paths[0].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _use_run(args) -> int:
    from .export import RunModel

    run = RunModel(args.run_dir)
    if args.command == "generate":
        print(run.generate(run.client_index(args.client), args.prompt, args.max_new_tokens))
        return 0
    indices = range(len(run.clients)) if args.all else [run.client_index(args.client)]
    for k in indices:
        out = Path(args.out) / run.clients[k]["name"] if args.all else Path(args.out)
        run.export(k, out, selected=args.selected)
        print(f"client {run.clients[k]['name']}: {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
