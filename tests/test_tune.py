"""`mira tune`: validation-only search, resume after a kill, and best settings that reproduce."""

import json
import subprocess
import sys
import time

import optuna
import pytest

import mira.client
from mira.cli import main
from mira.client import build_workspace
from mira.comparison import read_params
from mira.config import ConfigError, load_config
from mira.tuning import tune

TINY = ["model.name=tiny-random", "data.train_per_client=12", "data.test_per_client=6", "data.val_per_client=6",
        "train.local_steps=2", "train.batch_size=4", "train.lr=0.05", "federation.rounds=2", "eval.eval_every=1",
        "eval.generate_per_client=1", "eval.max_new_tokens=2", "device=cpu", "federation.sample_fraction=0.5"]


class Untouchable(list):
    """A test split that fails the test if anything reads an example of it (its size may be logged)."""

    def _refuse(self, *args):
        raise AssertionError("the test split was read during tuning")

    __getitem__ = __iter__ = _refuse


def test_tuning_never_reads_the_test_split(tmp_path, monkeypatch):
    def guarded(cfg):
        ws = build_workspace(cfg)
        for client in ws.clients:
            client.test = Untouchable(client.test)
        ws.test_sets = [Untouchable(s) for s in ws.test_sets]
        return ws

    monkeypatch.setattr(mira.client, "build_workspace", guarded)
    cfg = load_config(None, [*TINY, f"out_dir='{tmp_path}'", "name=guarded"])
    finished = []
    out = tune(cfg, ["mira@learned", "ditto"], trials=2, progress=False, on_trial=lambda: finished.append(1))
    assert len(finished) == 4  # after every trial of every variant
    storage = f"sqlite:///{out / 'study.db'}"
    for name in ("mira+learned", "ditto"):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    params = read_params(out / "best_params.toml", ["mira@learned", "ditto"])
    assert set(params["mira@learned"]["mira"]) == {"eta", "lam", "graph"} and "knn" in params["mira@learned"]["mira"]["graph"]
    assert set(params["ditto"]["ditto"]) == {"mu"}
    with pytest.raises(AssertionError, match="test split was read"):
        guarded(cfg).test_sets[0][0]


def _tune_args(tmp_path):
    args = [sys.executable, "-m", "mira.cli", "tune", "--no-progress", "-a", "fedit", "--trials", "3",
            "--set", f"out_dir='{tmp_path}'", "--set", "federation.rounds=6"]
    for item in TINY:
        if not item.startswith("federation.rounds"):
            args += ["--set", item]
    return args


def test_tune_resumes_after_a_kill_and_its_best_settings_reproduce(tmp_path, capsys):
    proc = subprocess.Popen(_tune_args(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = tmp_path / "tune" / "trials"
    try:
        deadline = time.monotonic() + 120
        while not list(trials.glob("*/checkpoint.safetensors")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "tuning ended before it could be killed"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    killed = [p.name for p in trials.iterdir()]
    time.sleep(2.5)  # the killed trial's heartbeat goes stale
    subprocess.run(_tune_args(tmp_path), check=True, capture_output=True, timeout=300)

    study = optuna.load_study(study_name="fedit", storage=f"sqlite:///{tmp_path / 'tune' / 'study.db'}")
    states = optuna.trial.TrialState
    finished = [t for t in study.trials if t.state in (states.COMPLETE, states.PRUNED)]
    assert len(finished) == 3 and study.trials[0].state == states.FAIL
    retried = next(t for t in finished if t.system_attrs.get("failed_trial") == 0)
    assert retried.state == states.COMPLETE  # the pruner starts after 2 trials
    assert retried.params == study.trials[0].params
    assert retried.user_attrs["run_dir"].endswith(killed[0])  # the retried trial resumed its run

    args = ["compare", "--no-progress", "-a", "fedit", "--params", str(tmp_path / "tune" / "best_params.toml"),
            "--set", f"out_dir='{tmp_path}'", "--set", "federation.rounds=6"]
    for item in TINY:
        if not item.startswith("federation.rounds"):
            args += ["--set", item]
    assert main(args) == 0
    final = json.loads((tmp_path / "compare" / "fedit-s0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["selected"]["mean_val_loss"] == study.best_value
    assert "train.lr = " in (tmp_path / "compare" / "results.md").read_text()


def test_compare_needs_settings_for_every_variant(tmp_path):
    (tmp_path / "p.toml").write_text('[fedit.train]\nlr = 0.01\n')
    with pytest.raises(ConfigError, match="no settings for mira@ground_truth"):
        read_params(tmp_path / "p.toml", ["fedit", "mira@ground_truth"])
    with pytest.raises(ConfigError, match="data.val_per_client must be >= 1"):
        tune(load_config(None, [*TINY, "data.val_per_client=0", f"out_dir='{tmp_path}'"]), ["fedit"], 1)
