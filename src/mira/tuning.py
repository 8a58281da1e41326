"""`mira tune`: hyper-parameter search on validation loss only, the same budget for every algorithm.

Each variant gets its own Optuna study (TPE sampler, the first half of the trials drawn at
random; median pruner on the intermediate validation
losses) in one SQLite file, `<out_dir>/<name>/study.db`, so an interrupted search continues where it
stopped (a trial cut off mid-run is retried with the same settings and resumes from its checkpoint)
and `optuna-dashboard sqlite:///.../study.db` can open it. The objective of a trial is the mean over
clients of the validation loss of each client's selected adapter (its lowest validation loss over
the evaluated rounds). Trials run with `eval.test_sets = false`: the test sets are never read.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import random
import warnings
from pathlib import Path

import tomli_w

from .algorithms import adapter_key, algorithm_names
from .callbacks import Callback, SharedInitialEvaluation
from .checkpoint import atomic_write_text
from .client import shared_workspace
from .comparison import parse_variant, variant_config
from .config import Config, ConfigError, settings_class
from .results import label
from .simulation import run

log = logging.getLogger(__name__)
STUDY_DB = "study.db"
BEST_PARAMS = "best_params.toml"
OBJECTIVE = "mean_selected_val_loss"
LOCK = "tune.lock"


TRIAL_FAILURES = (ValueError, RuntimeError, ArithmeticError)
"""What a trial may raise without ending its study (a setting that diverges, a graph step out of bounds):
the trial is marked failed and the search goes on."""


def _storage(path: Path):
    """The study database at `path`; a ConfigError naming it if it is not a readable one."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(f"sqlite:///{path}", heartbeat_interval=1, grace_period=2,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=3, inherit_intermediate_values=True))
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(f"{path}: not a readable Optuna study database ({reason}); move it away to start "
                          "a new study") from None


def sampler_seed(seed: int) -> int:
    """The Optuna sampler's seed (< 2**32) for a run seed (any seed `mira run` takes)."""
    if not 0 <= seed < 2**63:
        raise ConfigError(f"--seed {seed}: must be >= 0 and < 2**63, as a run's seed")
    return seed if seed < 2**32 else random.Random(f"tune-{seed}").getrandbits(32)


@contextlib.contextmanager
def _locked(out: Path):
    """Hold the study folder for this process: a second `mira tune` on it is refused (it would run the
    same trials again, in the same trial folders)."""
    with open(out / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ConfigError(f"{out}: another mira tune (pid {handle.read().strip() or '?'}) is running on this "
                              "study; wait for it, or tune into another --set name=...") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def tune(cfg: Config, variants: list[str], trials: int, seed: int = 0, progress: bool = True,
         on_trial=None) -> Path:
    """Run `trials` trials for every variant on seed `seed` under <out_dir>/<name>/, write
    best_params.toml (for `mira compare --params`) and trials.md / trials.csv; return the folder.
    `on_trial()` is called after every trial (finished, pruned or failed)."""
    import optuna

    if trials < 1 or not variants:
        raise ConfigError("tune: give at least one algorithm and --trials >= 1")
    for spec in variants:
        if parse_variant(spec)[0] not in algorithm_names():
            raise ConfigError(f"tune: unknown algorithm in {spec!r}; choose from {', '.join(sorted(algorithm_names()))}")
    if cfg.data.val_per_client < 1:
        raise ConfigError("tune: data.val_per_client must be >= 1 (tuning uses validation loss only)")
    sampler = sampler_seed(seed)
    out = cfg.run_dir
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        storage = _storage(out / STUDY_DB)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        workspaces, initial = {}, {}  # one model load, and one round-0 validation, per kind of adapter
        for spec in variants:
            study = optuna.create_study(study_name=label(spec), storage=storage, load_if_exists=True,
                                        direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
                                        sampler=optuna.samplers.TPESampler(seed=sampler,
                                                                           n_startup_trials=max(1, trials // 2)))
            study.set_user_attr("variant", spec)
            finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
            done = sum(t.state in finished for t in study.trials)
            if done < trials:
                ws = shared_workspace(workspaces, variant_config(cfg, spec, seed, out))
                study.optimize(lambda trial: _objective(trial, cfg, spec, seed, out, ws, progress,
                                                        initial.setdefault(adapter_key(ws.cfg), SharedInitialEvaluation()),
                                                        clients=ws.clients),
                               n_trials=trials - done, catch=TRIAL_FAILURES,
                               callbacks=[lambda *_: on_trial()] if on_trial else None)
            if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                write_tables(out)
                raise ConfigError(f"tune: every trial of {spec} failed or was pruned; see {out / 'trials.md'}")
        write_tables(out)
    return out


def _objective(trial, cfg: Config, spec: str, seed: int, out: Path, ws, progress: bool,
               initial: SharedInitialEvaluation, clients=()) -> float:
    import optuna

    base = variant_config(cfg, spec, seed, out)
    params = settings_class(base.federation.algorithm).search_space(trial, base, clients)
    # Named by its settings, so a retried trial (same settings) resumes the run it started.
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    sub = variant_config(cfg, spec, seed, out / "trials", params, name=f"{label(spec)}-{digest}")
    sub.eval.test_sets = False
    trial.set_user_attr("overrides", params)
    trial.set_user_attr("run_dir", str(sub.run_dir))

    class Pruning(Callback):
        """Report every evaluation's objective to the trial; stop the run where the pruner says so."""

        def on_evaluation(self, round_: int, record: dict) -> None:
            if OBJECTIVE in record:
                trial.report(record[OBJECTIVE], round_)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after round {round_}")

    resume = (sub.run_dir / "checkpoint.safetensors").is_file()
    log.info("tune: %s trial %d %s", label(spec), trial.number, json.dumps(params))
    result = run(sub, overwrite=True, progress=progress, ws=dataclasses.replace(ws, cfg=sub), resume=resume,
                 callbacks=[initial, Pruning()])
    return result.history[-1][OBJECTIVE]


def write_tables(out: Path) -> list[Path]:
    """best_params.toml (each variant's best trial's overrides), trials.csv and trials.md (every
    trial: state, objective, settings, last round reached), for every variant in the study file."""
    import optuna

    storage = _storage(out / STUDY_DB)
    best, rows = {}, []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        spec = study.user_attrs["variant"]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            best[spec] = study.best_trial.user_attrs["overrides"]
        for t in study.trials:
            rows.append({"variant": label(spec), "trial": t.number, "state": t.state.name,
                         "value": "" if t.value is None else f"{t.value:.4f}",
                         "rounds": max(t.intermediate_values, default=""),  # the last round evaluated
                         "params": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in t.params.items()),
                         "best": "yes" if complete and t.number == study.best_trial.number else ""})
    atomic_write_text(out / BEST_PARAMS, "# Best settings per variant, by validation loss (mira tune); "
                                   "apply with mira compare --params\n" + tomli_w.dumps(best))
    columns = ["variant", "trial", "state", "value", "rounds", "params", "best"]
    with (out / "trials.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Tuning: {out.name}", "", "Objective: mean over clients of the selected adapters' validation loss "
             "(lower is better). Test sets are not read.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    (out / "trials.md").write_text("\n".join(lines) + "\n")
    return [out / BEST_PARAMS, out / "trials.md", out / "trials.csv"]
