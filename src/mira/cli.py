"""Command-line interface: `mira run`, `mira config`."""

from __future__ import annotations

import argparse
import logging
import sys

import tomli_w

from .config import ConfigError, describe_options, load_config, to_dict
from .graph import GraphError


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
                    "personalised adapters), FedIT (FedAvg of LoRA) and local training.",
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
    run.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")

    show = sub.add_parser("config", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=options,
                          help="print the resolved configuration as TOML (a starting point for a config file)",
                          description="Print the configuration that 'mira run' would use, as TOML.")
    _add_config_args(show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            print(tomli_w.dumps(to_dict(cfg)), end="")
            return 0
        from .simulation import run, summary_table

        result = run(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    except (ConfigError, GraphError, FileExistsError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"mira: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(result.history, result.clients))
    print(f"results in {result.run_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
