"""The algorithm registry: an algorithm defined in one place (here, this test) is a config choice,
is listed in --help, and runs with its own messages, client step and server rule."""

import pytest
import torch

from mira.algorithms import ADAPTER, ALGORITHMS, Algorithm
from mira.algorithms.base import write_trained_rows
from mira.algorithms.fedit import weighted_mean
from mira.cli import build_parser
from mira.client import build_workspace
from mira.config import ConfigError
from mira.simulation import run


@pytest.fixture
def toy():
    """A toy algorithm: clients train B only, and the server moves each sampled client halfway to the
    round's mean adapter."""

    class Halfway(Algorithm):
        name = "toy_halfway"
        sent_to: list[int] = []
        replies: dict = {}

        def send(self, thetas, k):
            Halfway.sent_to.append(k)
            return {ADAPTER: thetas[k]}

        @classmethod
        def client_step(cls, train, received, cfg):
            return {ADAPTER: train(received[ADAPTER], freeze_a=True)}

        def aggregate(self, thetas, replies, num_examples):
            Halfway.replies = replies
            mean = weighted_mean({k: r[ADAPTER] for k, r in replies.items()}, num_examples)
            out = write_trained_rows(thetas, replies)
            out[sorted(replies)] = (out[sorted(replies)] + mean) / 2
            return out

    yield Halfway
    del ALGORITHMS["toy_halfway"]


def test_a_new_algorithm_is_one_class(tiny_config, toy, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "toy_halfway" in capsys.readouterr().out
    cfg = tiny_config("federation.algorithm=toy_halfway", "federation.rounds=1", "federation.sample_fraction=1.0",
                      "name=toy")
    result = run(cfg, progress=False)
    k = len(result.clients)
    assert sorted(toy.sent_to) == list(range(k)) and sorted(toy.replies) == list(range(k))
    trained = torch.stack([toy.replies[i][ADAPTER] for i in range(k)])
    torch.testing.assert_close(result.thetas, (trained + trained.mean(0)) / 2)  # equal sizes: a plain mean
    ws = build_workspace(cfg)
    a_mask = ws.slot.layout.lora_a_mask()
    assert torch.equal(trained[:, a_mask], ws.initial_theta[a_mask].expand(k, -1))  # its client step froze A
    assert not torch.equal(trained[0], trained[1])


def test_names_are_unique_and_unknown_ones_refused(tiny_config):
    with pytest.raises(ValueError, match="two algorithms are named 'fedit'"):
        type("Again", (Algorithm,), {"name": "fedit", "aggregate": lambda self, *args: None})
    with pytest.raises(ConfigError, match="federation.algorithm: expected one of"):
        tiny_config("federation.algorithm=nope")
