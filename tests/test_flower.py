"""The Flower app on a real Deployment Engine: a stock SuperLink and one SuperNode per client on
127.0.0.1 (every process stopped by PID afterwards), against the in-process simulator."""

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mira.algorithms import build_algorithm
from mira.client import build_workspace
from mira.config import load_config
from mira.flower.loopback import Loopback
from mira.rounds import run_federation
from mira.simulation import InProcess, run

ROOT = Path(__file__).resolve().parents[1]
TASKS = '["add", "difference", "sentiment"]'
NI = ROOT / "tests" / "fixtures" / "ni"
NI_TASKS = ["task001_capital", "task002_currency", "task003_sentiment"]


def flower_overrides(name: str) -> str:
    return (f"model.name=tiny-random; data.tasks={TASKS}; data.train_per_client=16; data.test_per_client=8; "
            f"federation.rounds=2; federation.sample_fraction=1.0; train.local_steps=3; eval.eval_every=2; "
            f"eval.generate_per_client=2; flower.round_timeout=60; name={name}")


def simulator_config(tmp_path: Path, overrides: str):
    return load_config(None, overrides.split("; ") + [f"out_dir='{tmp_path / 'sim'}'"])


def adapters(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: load_file(p) for p in sorted((run_dir / "adapters").glob("*.safetensors"))}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=tol, rtol=0), key


def assert_same_as_simulator(tmp_path: Path, run_dir: Path, overrides: str, log: str) -> list[str]:
    """The Flower run in `run_dir` against the simulator with the same overrides: adapters (1e-5),
    losses (also the selected adapters'), traffic and clients. Returns the clients' names."""
    assert (run_dir / "metrics.jsonl").exists(), log[-3000:]
    expected = run(simulator_config(tmp_path, overrides), progress=False).run_dir
    got, want = adapters(run_dir), adapters(expected)
    assert got.keys() == want.keys()
    for name in want:
        assert_close(got[name], want[name])
    for flower_record, sim_record in zip(records(run_dir), records(expected), strict=True):
        for key in ("mean_local_loss", "mean_val_loss", "mean_global_loss", "bytes_up", "bytes_down", "bytes_state"):
            assert flower_record.get(key) == pytest.approx(sim_record.get(key), abs=1e-4)
        timings = sorted(k for k in sim_record if k.endswith("_seconds"))  # the same parts timed, answers by the nodes
        assert sorted(k for k in flower_record if k.endswith("_seconds")) == timings
        assert (flower_record.get("generate_seconds", 0) > 0) == (sim_record.get("generate_seconds", 0) > 0)
    flower_selected, sim_selected = (records(d)[-1].get("selected", {}) for d in (run_dir, expected))
    for key in ("mean_local_loss", "mean_global_loss", "mean_rouge_l"):  # of the validation-selected adapters
        assert flower_selected.get(key) == pytest.approx(sim_selected.get(key), abs=1e-4)
    assert json.loads((run_dir / "clients.json").read_text()) == json.loads((expected / "clients.json").read_text())
    return sorted(got)


def test_deployment_engine_gives_the_simulators_adapters(tmp_path):
    """Node 0 reads the server's data.path; nodes 1 and 2 hold only their own task file (client-data)."""
    out = tmp_path / "flower"
    overrides = flower_overrides("mira") + f'; data.source=natural_instructions; data.path="{NI}"; data.tasks=[]'
    own = {k: f'client-data="{NI / name}.json"' for k, name in enumerate(NI_TASKS) if k > 0}
    with Loopback(tmp_path / "deployment", num_nodes=3, node_configs=own) as federation:
        log = federation.run(ROOT, {"overrides": overrides, "out-dir": str(out)}, timeout=600)
    assert assert_same_as_simulator(tmp_path, out / "mira", overrides, log) == NI_TASKS


def test_every_message_shape_on_flower_equals_the_simulator(tmp_path):
    """FedSA-LoRA's messages hold part of an adapter (A, one flat array) beside private state (the
    client's whole adapter): on the Deployment Engine the same adapters, losses and measured bytes as
    the simulator (a whole adapter alone, MIRA: the test above)."""
    out = tmp_path / "flower"
    overrides = (flower_overrides("fedsa") + "; federation.algorithm=fedsa_lora; federation.rounds=1; "
                 "data.val_per_client=0; eval.global_loss=false; eval.generate_per_client=0")
    with Loopback(tmp_path / "deployment", num_nodes=3) as federation:
        log = federation.run(ROOT, {"overrides": overrides, "out-dir": str(out)}, timeout=600)
    assert assert_same_as_simulator(tmp_path, out / "fedsa", overrides, log) == json.loads(TASKS)
    round_1 = records(out / "fedsa")[1]  # counted on the records the ServerApp sent and received
    assert 0 < round_1["bytes_down"] == round_1["bytes_up"] < round_1["bytes_state"] / 2


def test_fedkseed_and_fedptuning_on_flower_equal_the_simulator(tmp_path):
    """FedKSeed's messages are seed scalars down and (int32 index, scalar) pairs up, and its stateless
    clients replay the scalars; FedPTuning's adapter is P-tuning's: both as in the simulator."""
    out = tmp_path / "flower"
    runs = {"kseed": "federation.algorithm=fedkseed; fedkseed.candidates=64; fedkseed.lr=0.001",
            "ptuning": "federation.algorithm=fedptuning; federation.rounds=1"}
    with Loopback(tmp_path / "deployment", num_nodes=3) as federation:
        for name, algorithm in runs.items():
            overrides = flower_overrides(name) + f"; {algorithm}; eval.generate_per_client=0"
            log = federation.run(ROOT, {"overrides": overrides, "out-dir": str(out)}, timeout=600)
            assert assert_same_as_simulator(tmp_path, out / name, overrides, log) == json.loads(TASKS)
    round_2 = records(out / "kseed")[2]
    assert (round_2["bytes_down"], round_2["bytes_up"]) == (3 * 64 * 4, 3 * 3 * (4 + 4))


def test_simulation_engine_gives_the_simulators_adapters(tmp_path):
    pytest.importorskip("ray", reason="Flower's Simulation Engine needs Ray: pip install -e '.[simulation]'")
    out = tmp_path / "flower"
    with Loopback(tmp_path / "simulation", num_nodes=3, simulation=True) as federation:
        log = federation.run(ROOT, {"overrides": flower_overrides("ray"), "out-dir": str(out)}, timeout=600)
    assert assert_same_as_simulator(tmp_path, out / "ray", flower_overrides("ray"), log) == json.loads(TASKS)


class Crashed(InProcess):
    """The simulator with client `client` gone from round `round_` on (no training, no evaluation)."""

    def __init__(self, ws, client, round_):
        super().__init__(ws)
        self.client, self.round = client, round_

    def train(self, sent, round_, optimizer_states, progress, on_step=None):
        alive = {k: message for k, message in sent.items() if not (round_ >= self.round and k == self.client)}
        return super().train(alive, round_, optimizer_states, progress, on_step)


def test_a_killed_supernode_is_skipped_and_the_others_are_unaffected(tmp_path):
    out = tmp_path / "flower"
    run_dir = out / "crash"
    with Loopback(tmp_path / "deployment", num_nodes=3) as federation:
        process = federation.start_run(ROOT, {"overrides": flower_overrides("crash") + "; flower.round_timeout=45",
                                              "out-dir": str(out)})
        deadline = time.monotonic() + 400
        while not (run_dir / "metrics.jsonl").exists() or len(records(run_dir)) < 2:  # rounds 0 and 1 done
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
            time.sleep(0.2)
        federation.kill_node(2)
        log, _ = process.communicate(timeout=400)
    history = records(run_dir)
    assert [r["round"] for r in history] == [0, 1, 2], log[-3000:]
    assert "sentiment" in history[2]["sampled"] and "sentiment" not in history[2]["train_loss"]
    assert sorted(history[2]["local_loss"]) == ["add", "difference"]  # the dead client could not evaluate

    cfg = simulator_config(tmp_path, flower_overrides("crash"))
    ws = build_workspace(cfg)
    rule = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
    expected = run_federation(cfg, ws.clients, ws.slot.layout, ws.initial_theta, rule,
                              Crashed(ws, client=2, round_=2), progress=False)
    got, want = adapters(run_dir), adapters(expected.run_dir)
    for name in want:  # the survivors as if the dead client had only missed round 2; its own adapter from round 1
        assert_close(got[name], want[name])


def test_a_node_with_its_own_data_must_hold_exactly_one_client():
    from types import SimpleNamespace

    from mira.flower.clientapp import _node_client
    from mira.flower.config_message import CONFIG, config_record

    cfg = load_config(None, ["model.name=tiny-random", "data.source=natural_instructions", f"data.path='{NI}'"])
    msg = SimpleNamespace(content={CONFIG: config_record(cfg, 0)})

    def node(**config):
        return SimpleNamespace(node_config={"partition-id": 1, **config})

    with pytest.raises(ValueError, match="no 'num-partitions'"):
        _node_client(msg, node(**{"client-data": str(NI / "task002_currency.json")}))
    with pytest.raises(ValueError, match="the data make 3 clients"):
        _node_client(msg, node(**{"client-data": str(NI), "num-partitions": 3}))
    _, _, client, k, num_clients = _node_client(msg, node(**{"client-data": str(NI / "task002_currency.json"),
                                                               "num-partitions": 3}))
    assert client.name == "task002_currency" and k == 1 and num_clients == 3


def test_run_simulation_from_python_with_the_factories(tmp_path):
    """flwr.simulation.run_simulation driven from Python: the same adapters as the simulator."""
    pytest.importorskip("ray", reason="Flower's Simulation Engine needs Ray: pip install -e '.[simulation]'")
    import warnings

    from flwr.simulation import run_simulation

    import mira.flower

    overrides = flower_overrides("python") + "; federation.rounds=1; eval.generate_per_client=0; flower.round_timeout=600"
    cfg = load_config(None, overrides.split("; ") + [f"out_dir='{tmp_path / 'flower'}'"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=mira.flower.server_app(cfg), client_app=mira.flower.client_app(), num_supernodes=3,
                       backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}})
    assert assert_same_as_simulator(tmp_path, cfg.run_dir, overrides, "") == json.loads(TASKS)
