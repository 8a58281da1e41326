"""The paper's two other baselines: FedKSeed (seed replay, its messages, its server state, exact
resume) and FedPTuning (P-tuning through PEFT, averaged like FedIT, exported for PEFT)."""

import json

import pytest
import torch
from peft import PeftModel

from mira.algorithms import FedIT, build_algorithm
from mira.algorithms.fedkseed.algorithm import (
    GRADIENTS,
    PROBABILITIES,
    SCALARS,
    SEEDS,
    FedKSeed,
    candidate_seeds,
    direction,
    replay,
    seed_probabilities,
)
from mira.checkpoint import load_checkpoint
from mira.cli import main
from mira.client import ClientUpdate, build_workspace
from mira.comparison import compare, variant_config
from mira.data.encode import collate, encode
from mira.evaluate import test_loss as loss_on_test_set
from mira.export import RunModel
from mira.model import tiny_model
from mira.reporting import Comparison
from mira.results import read_history
from mira.rounds import server_step
from mira.simulation import run


class Quadratic:
    """A fake client trainer: loss ½‖θ − target‖² on every batch; records every θ it is asked about."""

    def __init__(self, initial, target, seed=7):
        self.initial_theta, self.target, self.seed = initial, target, seed
        self.asked, self.logged = [], []

    def loss(self, theta, step):
        self.asked.append(theta.clone())
        return float(0.5 * (theta - self.target).square().sum())

    def log_step(self, loss):
        self.logged.append(loss)


def kseed_config(tiny_config, *overrides):
    return tiny_config("federation.algorithm=fedkseed", "fedkseed.candidates=16", "fedkseed.lr=0.01",
                       "fedkseed.eps=0.001", *overrides)


def test_a_client_replaying_the_scalars_has_exactly_the_servers_model_and_the_steps_it_took(tiny_config):
    cfg = kseed_config(tiny_config)
    p = 40
    initial = torch.randn(p, generator=torch.Generator().manual_seed(0))
    rule = FedKSeed(candidate_seeds(cfg.seed, 16), initial, lr=0.01, local_steps=cfg.train.local_steps)
    client = Quadratic(initial, torch.ones(p))
    reply = FedKSeed.client_step(client, rule.send(None, 0), cfg)
    assert reply[SEEDS].dtype == torch.int32 and reply[SEEDS].shape == reply[GRADIENTS].shape == (3,)
    # The steps the client took, one after the other from the global model.
    own = initial.clone()
    for j, g in zip(reply[SEEDS].tolist(), reply[GRADIENTS].tolist()):
        own -= 0.01 * g * direction(rule.seeds[j], p)
    assert not torch.allclose(own, initial)
    thetas = rule.aggregate(initial.repeat(2, 1), {0: reply}, {0: 5})  # the only client: weight 1
    assert torch.count_nonzero(rule.scalars) == len(set(reply[SEEDS].tolist()))
    torch.testing.assert_close(thetas[0], own, rtol=0, atol=1e-6)  # the same steps, summed per seed
    assert torch.equal(thetas[0], thetas[1])  # one global model
    # Next round: a stateless client rebuilds the model from the scalars alone, bit for bit the server's.
    again = Quadratic(initial, torch.ones(p))
    second = FedKSeed.client_step(again, rule.send(thetas, 1), cfg)
    z = direction(rule.seeds[int(second[SEEDS][0])], p)
    assert torch.equal(again.asked[0], thetas[0] + 0.001 * z)
    assert torch.equal(replay(initial, rule.scalars, rule.seeds), thetas[0])


def test_server_weights_the_clients_by_examples_and_rejects_unknown_seeds(tiny_config):
    cfg = kseed_config(tiny_config)
    initial = torch.zeros(5)
    rule = FedKSeed(candidate_seeds(0, 16), initial, lr=0.5, local_steps=2)
    replies = {0: {SEEDS: torch.tensor([3, 3], dtype=torch.int32), GRADIENTS: torch.tensor([1.0, 2.0])},
               2: {SEEDS: torch.tensor([3, 9], dtype=torch.int32), GRADIENTS: torch.tensor([4.0, -8.0])}}
    rule.aggregate(torch.zeros(3, 5), replies, {0: 1, 2: 3})
    expected = torch.zeros(16)
    expected[3] = -0.5 * (0.25 * (1 + 2) + 0.75 * 4)
    expected[9] = -0.5 * 0.75 * -8
    torch.testing.assert_close(rule.scalars, expected)
    bad = {1: {SEEDS: torch.tensor([0, 16], dtype=torch.int32), GRADIENTS: torch.zeros(2)}}
    sent = {1: rule.send(None, 1)}
    thetas = torch.zeros(3, 5)
    _, record = server_step(rule, thetas, sent, [ClientUpdate(1, bad[1], 4, 0.0)], ["a", "b", "c"], 2,
                            cfg.federation)
    assert "outside 0..15" in record["rejected"]["b"]
    floats = {SEEDS: torch.tensor([0.0, 1.0]), GRADIENTS: torch.zeros(2)}  # indices must be int32
    _, record = server_step(rule, thetas, sent, [ClientUpdate(1, floats, 4, 0.0)], ["a", "b", "c"], 2, cfg.federation)
    assert "dtype torch.float32, expected torch.int32" in record["rejected"]["b"]
    assert torch.equal(rule.scalars, expected)  # rejected replies change nothing


def test_differentiated_sampling_favours_seeds_with_large_gradients(tiny_config):
    amplitude_sum = torch.zeros(4, dtype=torch.float64)
    count = torch.ones(4, dtype=torch.float64)
    amplitude_sum[2], count[2] = 0.5, 2.0  # history [0, 0.5]: mean 0.25, the largest
    probabilities = seed_probabilities(amplitude_sum, count)
    assert probabilities.sum() == pytest.approx(1.0) and int(probabilities.argmax()) == 2
    assert probabilities[2] == pytest.approx(torch.e / (torch.e + 3))  # softmax of min-max normalised [0, 0, 1, 0]
    cfg = kseed_config(tiny_config, "fedkseed.sampling=differentiated", "train.local_steps=400")
    rule = FedKSeed(candidate_seeds(0, 16), torch.zeros(8), lr=0.1, local_steps=400, differentiated=True)
    rule.amplitude_sum[5] = 100.0  # seed 5 has the largest amplitude: probability e / (e + 15) = 0.153
    sent = rule.send(None, 0)
    assert set(sent) == {SCALARS, PROBABILITIES}
    assert sent[PROBABILITIES][5] == pytest.approx(torch.e / (torch.e + 15))
    differentiated = FedKSeed.client_step(Quadratic(torch.zeros(8), torch.ones(8)), sent, cfg)[SEEDS].tolist()
    uniform = FedKSeed.client_step(Quadratic(torch.zeros(8), torch.ones(8)), {SCALARS: sent[SCALARS]}, cfg)
    assert differentiated.count(5) / 400 == pytest.approx(0.153, abs=0.05)
    assert uniform[SEEDS].tolist().count(5) / 400 == pytest.approx(1 / 16, abs=0.04)


def test_fedkseed_run_messages_resume_and_state(tiny_config):
    """A real run: kilobyte messages, one global model, the server state is the scalars, and a run
    stopped after round 1 and resumed equals the uninterrupted one exactly."""
    full = run(kseed_config(tiny_config, "name=full", "federation.sample_fraction=1.0"), progress=False)
    k = len(full.clients)
    round_1 = full.history[1]
    assert round_1["bytes_down"] == k * 16 * 4 and round_1["bytes_up"] == k * 3 * (4 + 4)
    assert all(torch.equal(row, full.thetas[0]) for row in full.thetas)
    ws = build_workspace(kseed_config(tiny_config))
    assert not torch.equal(full.thetas[0], ws.initial_theta)
    state = load_checkpoint(full.run_dir).server_state
    assert torch.equal(replay(ws.initial_theta, state["seed_scalars"], candidate_seeds(0, 16)), full.thetas[0])
    cut = kseed_config(tiny_config, "name=cut", "federation.sample_fraction=1.0", "federation.rounds=1")
    run(cut, progress=False)
    resumed = run(kseed_config(tiny_config, "name=cut", "federation.sample_fraction=1.0"), progress=False,
                  resume=True)
    assert torch.equal(resumed.thetas, full.thetas)
    assert resumed.history[-1]["mean_local_loss"] == full.history[-1]["mean_local_loss"]


def test_fedptuning_trains_prompt_encoder_and_averages_like_fedit(tiny_config):
    cfg = tiny_config("federation.algorithm=fedptuning", "name=pt", "federation.sample_fraction=1.0")
    ws = build_workspace(cfg)
    names = ws.slot.layout.names
    assert names and all("prompt_encoder" in n for n in names) and not any("lora" in n for n in names)
    assert not ws.a_mask.any()
    rule = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
    trained = {0: ws.initial_theta + 1, 2: ws.initial_theta - 3}
    out = rule.aggregate(ws.initial_theta.repeat(3, 1), {k: {"adapter": t} for k, t in trained.items()}, {0: 3, 2: 1})
    torch.testing.assert_close(out, (ws.initial_theta + 0).expand(3, -1))  # (3·(+1) + 1·(−3)) / 4 = 0
    assert isinstance(rule, FedIT)
    # The test loss skips the virtual tokens' logits: the same as cross-entropy over the full logits.
    examples = ws.test_sets[0][:3]
    batch = collate(examples, ws.pad_id)
    with torch.no_grad():
        logits = ws.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, cfg.fedptuning.tokens:-1]  # position i predicts input token i + 1
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                                 ignore_index=-100)
    assert loss_on_test_set(ws.model, examples, 8, ws.pad_id) == pytest.approx(float(expected), rel=1e-5)
    result = run(cfg, progress=False, ws=ws)
    assert all(torch.equal(row, result.thetas[0]) for row in result.thetas)
    assert result.history[-1]["mean_local_loss"] < result.history[0]["mean_local_loss"]


@pytest.mark.parametrize("algorithm", ["mira", "fedptuning"])
def test_exported_adapter_loads_with_peft_and_matches_logits(tiny_config, tmp_path, algorithm):
    cfg = tiny_config("name=e", f"federation.algorithm={algorithm}")
    result = run(cfg, progress=False)
    assert main(["export", str(cfg.run_dir), "--client", "sort_words", "--out", str(tmp_path / "peft")]) == 0
    kind = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["peft_type"]
    assert kind == {"mira": "LORA", "fedptuning": "P_TUNING"}[algorithm]
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()
    base, tok = tiny_model()
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    mine = RunModel(cfg.run_dir)
    k = mine.client_index("sort_words")
    mine.use(k)
    assert torch.equal(mine.slot.get(), result.thetas[k])
    batch = collate([encode(e, tok, 128, cfg.model.prompt_format) for e in result.clients[k].test[:4]],
                    tok.pad_token_id)
    with torch.no_grad():
        ours = mine.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        theirs = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert main(["export", str(cfg.run_dir), "--all", "--out", str(tmp_path / "all")]) == 0
    assert len(list((tmp_path / "all").glob("*/adapter_model.safetensors"))) == len(result.clients)


def test_compare_gives_each_kind_of_adapter_its_own_model_and_round_0(tiny_config):
    """In one comparison P-tuning runs get a P-tuning model and their own initial evaluation; LoRA runs
    share theirs; the report shows FedKSeed's kilobyte messages beside the adapter methods'."""
    cfg = kseed_config(tiny_config, "name=cmp", "federation.rounds=1", "eval.generate_per_client=0")
    out = compare(cfg, ["mira", "fedptuning", "fedkseed"], [0], progress=False)
    first = {v: read_history(out / f"{v}-s0")[0]["mean_local_loss"] for v in ["mira", "fedptuning", "fedkseed"]}
    alone = run(variant_config(cfg, "fedptuning", 0, cfg.run_dir, name="alone"), progress=False)
    assert first["fedptuning"] == alone.history[0]["mean_local_loss"] != first["mira"] == first["fedkseed"]
    Comparison(out).write()
    traffic = next(line for line in (out / "results.md").read_text().splitlines()
                   if line.startswith("| bytes per sampled client per round"))
    cells = [c.strip() for c in traffic.strip("| ").split("|")][1:]  # mira, fedptuning, fedkseed
    assert cells[2] == "64 B / 24 B"  # 16 seed scalars down, 3 (index, scalar) pairs up
    down, up = cells[0].split(" / ")
    assert down == up and down.endswith("kB")
