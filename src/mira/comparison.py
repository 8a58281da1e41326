"""`mira compare`: several algorithms × seeds on the same clients, initial adapters and batches."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

from .algorithms import adapter_key
from .callbacks import SharedInitialEvaluation, evaluation_part
from .checkpoint import atomic_write_text
from .client import shared_workspace
from .config import Config, ConfigError, flatten, from_dict, load_config, merge, migrate, save_config, to_dict
from .results import COMPARISON_JSON, is_finished, label, read_history
from .simulation import run

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)


def parse_variant(spec: str) -> tuple[str, str | None]:
    """'mira' → ('mira', None); 'mira@ground_truth' → ('mira', 'ground_truth') (a graph kind)."""
    algorithm, _, graph = spec.partition("@")
    return algorithm, graph or None


def variant_config(cfg: Config, spec: str, seed: int, out_dir: Path, params: dict | None = None,
                   name: str | None = None) -> Config:
    """The configuration of one sub-run: `spec`'s algorithm (and graph) with its tuned `params`
    (nested overrides), this seed, under out_dir, named `name` (default <variant>-s<seed>)."""
    algorithm, graph = parse_variant(spec)
    data = merge(to_dict(cfg), migrate(params or {}))  # tuned settings may use keys that have moved
    data["federation"]["algorithm"] = algorithm
    if graph:
        data["mira"]["graph"]["kind"] = graph
    data |= {"seed": seed, "out_dir": str(out_dir), "name": name or f"{label(spec)}-s{seed}"}
    return from_dict(data, source=f"{spec} settings")


def read_params(path: str | Path, variants: list[str]) -> dict[str, dict]:
    """Per-variant settings from a TOML file written by `mira tune` (one table per variant, e.g.
    ["mira@ground_truth"] with train.lr, mira.lam, ...); every variant must have one."""
    try:
        params = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--params {path}: cannot read it ({exc})") from None
    missing = [v for v in variants if v not in params]
    if missing:
        raise ConfigError(f"--params {path}: no settings for {', '.join(missing)} "
                          f"(it has {', '.join(params) or 'none'}); "
                          "every compared variant needs its tuned settings, for a fair comparison")
    wrong = next((v for v in variants if not isinstance(params[v], dict)), None)
    if wrong is not None:
        raise ConfigError(f"--params {path}: {wrong!r} must be a table of settings (e.g. [{wrong}.train] lr = 0.001), "
                          f"not {params[wrong]!r}")
    return {v: params[v] for v in variants}


INITIAL_STATE = ("seed", "device", "model", "data", "eval")
"""The settings a run's round-0 evaluation depends on, besides its kind of adapter."""


def _initial_state(cfg: Config) -> tuple[str, dict]:
    return adapter_key(cfg), {key: value for key, value in to_dict(cfg).items() if key in INITIAL_STATE}


def sibling_initial_evaluation(sub: Config) -> dict | None:
    """The round-0 evaluation of another sub-run of the comparison (finished, or still running in another
    process) with the same seed, kind of adapter and INITIAL_STATE settings, so that it is the same
    evaluation; None if there is none."""
    mine = _initial_state(sub)
    for other in sorted(sub.run_dir.parent.glob(f"*-s{sub.seed}")):
        history = read_history(other, up_to_round=0) if other != sub.run_dir else []
        if not history or "local_loss" not in history[0]:
            continue
        try:
            theirs = load_config(other / "config.toml")
        except (OSError, ConfigError):
            continue
        if _initial_state(theirs) == mine:
            log.info("compare: %s takes its round-0 evaluation from %s", sub.name, other.name)
            return evaluation_part(history[0])
    return None


class RoundZeroTurn(SharedInitialEvaluation):
    """A fresh sub-run's round-0 evaluation when sub-runs of one comparison are started side by side (a
    process each): it holds a lock on the comparison's folder from looking for a sibling's round-0
    evaluation (`sibling_initial_evaluation`) until, finding none, its own round-0 record is written,
    so a sibling waiting for the lock then takes that record. The lock goes with its process (a crashed
    run holds nothing); where the OS has no fcntl, no lock."""

    def __init__(self, sub: Config):
        self.file = open(sub.run_dir.parent / f".round-0-s{sub.seed}.lock", "w")
        if fcntl is not None:
            fcntl.flock(self.file, fcntl.LOCK_EX)
        super().__init__(sibling_initial_evaluation(sub))
        if self.record is not None:
            self.release()

    def on_round_end(self, record: dict) -> None:
        if record["round"] == 0:
            self.release()

    def release(self) -> None:
        self.file.close()


RESTART = ".restart"
"""In a sub-run's folder: it is to be trained afresh (its settings changed), even where it has a checkpoint."""


def _check_settings(sub: Config, restart: bool) -> None:
    """A sub-run already started (or finished) is continued (or kept) only under the settings it was
    started with: otherwise refuse, naming what differs, or with `restart` mark it to be trained afresh."""
    saved = sub.run_dir / "config.toml"
    if not saved.is_file():
        return
    before, now = flatten(to_dict(load_config(saved))), flatten(to_dict(sub))
    changed = sorted(key for key in before.keys() | now.keys() if key != "out_dir" and before.get(key) != now.get(key))
    if not changed:
        return
    if not restart:
        raise ConfigError(f"{sub.run_dir}: started with other settings ({', '.join(changed)} differ); rerun with "
                          "the settings it was started with, or with --restart-changed to train it afresh")
    log.warning("compare: %s: settings changed (%s); training it afresh", sub.name, ", ".join(changed))
    (sub.run_dir / RESTART).touch()


def _record_comparison(out: Path, variants: list[str], seeds: list[int], params: dict[str, dict]) -> None:
    """comparison.json: this call's variants, seeds and settings, keeping the settings recorded for other
    variants with the same seeds (by a `mira compare` beside or before this one, which the report also
    shows); under a lock on the folder, so calls side by side do not lose each other's."""
    with open(out / ".comparison.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        record = out / COMPARISON_JSON
        earlier = json.loads(record.read_text()) if record.is_file() else {}
        kept = {spec: p for spec, p in earlier.get("params", {}).items()
                if spec not in variants} if earlier.get("seeds") == seeds else {}
        atomic_write_text(record, json.dumps({"variants": [label(v) for v in variants], "seeds": seeds,
                                              "params": kept | params}))


def compare(cfg: Config, variants: list[str], seeds: list[int], progress: bool = True,
            params: dict[str, dict] | None = None, on_finished=None, restart: bool = False) -> Path:
    """Run every variant for every seed into <out_dir>/<name>/<variant>-s<seed>/ and return the
    comparison directory; `params` gives each variant its own settings (from `mira tune`).
    Finished sub-runs are kept, so an interrupted comparison continues; a sub-run started with other
    settings is an error, or with `restart` trained afresh. `on_finished(run_dir)` is called as each
    sub-run of this call finishes."""
    if not variants or not seeds:
        raise ConfigError("compare: give at least one algorithm and one seed")
    params = params or {}
    out = cfg.run_dir
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.toml")
    _record_comparison(out, variants, seeds, params)
    for seed in seeds:
        subs = [variant_config(cfg, spec, seed, out, params.get(spec)) for spec in variants]
        for sub in subs:
            _check_settings(sub, restart)
        todo = [s for s in subs if not is_finished(s.run_dir) or (s.run_dir / RESTART).exists()]
        if not todo:
            continue
        workspaces = {}  # one model load per seed and kind of adapter (LoRA, P-tuning)
        for sub in todo:
            log.info("compare: %s", sub.name)
            resume = (sub.run_dir / "checkpoint.safetensors").is_file() and not (sub.run_dir / RESTART).exists()
            turn = None if resume else RoundZeroTurn(sub)
            try:
                run(sub, overwrite=True, progress=progress, ws=shared_workspace(workspaces, sub), resume=resume,
                    callbacks=[turn] if turn else [])
            finally:
                if turn:
                    turn.release()
            (sub.run_dir / RESTART).unlink(missing_ok=True)
            if on_finished is not None:
                on_finished(sub.run_dir)
    return out
