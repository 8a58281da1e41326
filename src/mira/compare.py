"""`mira compare`: several algorithms × seeds on the same clients, initial adapters and batches."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

from .checkpoint import atomic_write_text
from .config import Config, ConfigError, save_config, validate
from .results import COMPARISON_JSON, is_finished
from .simulation import build_federation, run

log = logging.getLogger(__name__)


def parse_variant(spec: str) -> tuple[str, str | None]:
    """'mira' → ('mira', None); 'mira@ground_truth' → ('mira', 'ground_truth') (a graph kind)."""
    algorithm, _, graph = spec.partition("@")
    return algorithm, graph or None


def label(spec: str) -> str:
    """A variant's name in folders and tables: 'mira@ground_truth' → 'mira+ground_truth'."""
    return spec.replace("@", "+")


def variant_config(cfg: Config, spec: str, seed: int, out_dir: Path) -> Config:
    """The configuration of one sub-run: `spec`'s algorithm (and graph), this seed, under out_dir."""
    algorithm, graph = parse_variant(spec)
    sub = copy.deepcopy(cfg)
    sub.federation.algorithm = algorithm
    if graph:
        sub.graph.kind = graph
    sub.seed, sub.out_dir, sub.name = seed, str(out_dir), f"{label(spec)}-s{seed}"
    validate(sub)
    return sub


def compare(cfg: Config, variants: list[str], seeds: list[int], progress: bool = True) -> Path:
    """Run every variant for every seed into <out_dir>/<name>/<variant>-s<seed>/ and return the
    comparison directory. Finished sub-runs are kept, so an interrupted comparison continues."""
    if not variants or not seeds:
        raise ConfigError("compare: give at least one algorithm and one seed")
    out = cfg.run_dir
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.toml")
    atomic_write_text(out / COMPARISON_JSON, json.dumps({"variants": [label(v) for v in variants], "seeds": seeds}))
    for seed in seeds:
        subs = [variant_config(cfg, spec, seed, out) for spec in variants]
        todo = [s for s in subs if not is_finished(s.run_dir)]
        if not todo:
            continue
        # One model load per seed: the LoRA initialisation and the data depend on the seed only.
        fed = build_federation(todo[0])
        for sub in todo:
            this = dataclasses.replace(fed, cfg=sub)
            log.info("compare: %s", sub.name)
            resume = (sub.run_dir / "checkpoint.safetensors").is_file()
            run(sub, overwrite=True, progress=progress, fed=this, resume=resume)
    return out
