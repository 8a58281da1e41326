from pathlib import Path

import pytest

from mira.config import load_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def evaluations(monkeypatch):
    """(generate, clients, known, answered) of every in-process evaluation from here on (clients None:
    every client; known, answered: the clients not asked for their own losses, for answers)."""
    from mira.simulation import InProcess

    calls = []
    evaluate = InProcess.evaluate

    def recorded(self, thetas, clients, generate, test, cross, known=frozenset(), answered=frozenset()):
        calls.append((generate, None if len(clients) == len(thetas) else clients, known, answered))
        return evaluate(self, thetas, clients, generate, test, cross, known, answered)
    monkeypatch.setattr(InProcess, "evaluate", recorded)
    return calls


@pytest.fixture
def tiny_config(tmp_path):
    """A fast configuration on the tiny random model and a small synthetic suite."""
    def make(*overrides):
        return load_config(None, [
            "model.name=tiny-random", f"out_dir='{tmp_path}'", "data.train_per_client=16",
            "data.test_per_client=8", "train.local_steps=3", "train.batch_size=4", "train.lr=0.05",
            "federation.rounds=2", "eval.eval_every=1", "eval.generate_per_client=2", "eval.max_new_tokens=4",
            "device=cpu", *overrides])
    return make


@pytest.fixture(autouse=True, scope="session")
def node_cache(tmp_path_factory):
    """Flower nodes started by the tests (and the ClientApp called in-process) cache into a temporary folder."""
    import os

    os.environ["MIRA_NODE_CACHE"] = str(tmp_path_factory.mktemp("node-cache"))
    yield Path(os.environ["MIRA_NODE_CACHE"])
    del os.environ["MIRA_NODE_CACHE"]
