"""The algorithm registry: an algorithm defined in one place (here, this test) with a setting of its
own is a config choice, is listed in --help and `mira config`, is configured by --set and tuned by
`mira tune`, and runs with its own messages, client step and server rule."""

import json
import subprocess
import sys

import optuna
import pytest
import torch
from pydantic import Field

from mira.algorithms import ADAPTER, ALGORITHMS, Algorithm
from mira.algorithms.base import write_trained_rows
from mira.algorithms.fedit import weighted_mean
from mira.cli import build_parser, main
from mira.client import build_workspace
from mira.config import SETTINGS, AlgorithmSettings, ConfigError
from mira.lora import is_lora_a
from mira.simulation import run
from mira.tuning import tune


@pytest.fixture
def toy():
    """A toy algorithm: clients train B only, and the server moves each sampled client a fraction
    `toy_halfway.pull` of the way to the round's mean adapter (its own setting, tuned in [0.1, 1])."""

    class HalfwaySettings(AlgorithmSettings):
        algorithm = "toy_halfway"
        pull: float = Field(0.5, gt=0, le=1)
        """Fraction of the way to the round's mean adapter a sampled client moves."""

        @staticmethod
        def search_space(trial, cfg, clients=()):
            """pull, uniform in [0.1, 1]."""
            return {"toy_halfway": {"pull": trial.suggest_float("toy_halfway.pull", 0.1, 1.0)}}

    class Halfway(Algorithm):
        name = "toy_halfway"
        sent_to: list[int] = []
        replies: dict = {}

        def __init__(self, pull: float):
            self.pull = pull

        @classmethod
        def build(cls, cfg, clients, layout, initial_theta):
            return cls(cfg.settings.pull)

        def send(self, thetas, k):
            Halfway.sent_to.append(k)
            return {ADAPTER: thetas[k]}

        @classmethod
        def client_step(cls, train, received, cfg):
            return {ADAPTER: train(received[ADAPTER], trainable=lambda name: not is_lora_a(name))}

        def aggregate(self, thetas, replies, num_examples):
            Halfway.replies = replies
            mean = weighted_mean({k: r[ADAPTER] for k, r in replies.items()}, num_examples)
            out = write_trained_rows(thetas, replies)
            out[sorted(replies)] += self.pull * (mean - out[sorted(replies)])
            return out

    yield Halfway
    del ALGORITHMS["toy_halfway"], SETTINGS["toy_halfway"]


def test_a_new_algorithm_is_one_module_with_its_own_setting(tiny_config, toy, capsys, tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "toy_halfway" in help_text and "toy_halfway.pull = 0.5" in help_text
    assert main(["config", "--set", "federation.algorithm=toy_halfway", "--set", "toy_halfway.pull=0.25"]) == 0
    assert "[toy_halfway]\npull = 0.25" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="toy_halfway.pull: must be <= 1"):
        tiny_config("toy_halfway.pull=2")
    cfg = tiny_config("federation.algorithm=toy_halfway", "toy_halfway.pull=0.25", "federation.rounds=1",
                      "federation.sample_fraction=1.0", "name=toy")
    result = run(cfg, progress=False)
    k = len(result.clients)
    assert sorted(toy.sent_to) == list(range(k)) and sorted(toy.replies) == list(range(k))
    trained = torch.stack([toy.replies[i][ADAPTER] for i in range(k)])
    torch.testing.assert_close(result.thetas, trained + 0.25 * (trained.mean(0) - trained))  # equal sizes
    ws = build_workspace(cfg)
    a_mask = ws.slot.layout.lora_a_mask()
    assert torch.equal(trained[:, a_mask], ws.initial_theta[a_mask].expand(k, -1))  # its client step froze A
    assert not torch.equal(trained[0], trained[1])


def test_names_are_unique_and_unknown_ones_refused(tiny_config):
    with pytest.raises(ValueError, match="two algorithms are named 'fedit'"):
        type("Again", (Algorithm,), {"name": "fedit", "aggregate": lambda self, *args: None})
    with pytest.raises(ConfigError, match="federation.algorithm: expected one of"):
        tiny_config("federation.algorithm=nope")


def test_a_new_algorithms_setting_is_tuned(tiny_config, toy, tmp_path):
    cfg = tiny_config(f"out_dir='{tmp_path}'", "name=tune", "federation.rounds=1", "data.val_per_client=4")
    out = tune(cfg, ["toy_halfway"], trials=2, progress=False)
    trials = optuna.load_study(study_name="toy_halfway", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [set(t.params) for t in trials] == [{"toy_halfway.pull"}] * 2
    pulls = {t.number: t.params["toy_halfway.pull"] for t in trials}
    assert "[toy_halfway.toy_halfway]" in (out / "best_params.toml").read_text() and len(set(pulls.values())) == 2


def test_validating_any_algorithms_config_imports_no_torch():
    names = sorted(ALGORITHMS)
    script = f"""
import json, sys
from mira.config import load_config
for name in {names!r}:
    load_config(None, [f"federation.algorithm={{name}}"]).settings
print(json.dumps(sorted(m for m in ("torch", "transformers", "peft", "mira.algorithms.base") if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
