"""Validation split, per-client model selection and `mira export --selected`."""

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from mira.cli import main
from mira.client import build_workspace
from mira.config import DataConfig
from mira.data import Task, load_clients
from mira.data.partition import partition
from mira.evaluate import losses_on
from mira.lora import load_adapter
from mira.rounds import global_loss_clients
from mira.simulation import evaluate, run

FIXTURES = Path(__file__).parent / "fixtures"


def _tasks(n=40):
    return [Task(f"t{i}", "f", [f"ex{i}-{j}" for j in range(n)]) for i in range(3)]


def test_validation_is_disjoint_and_leaves_the_test_split_unchanged():
    without = partition(_tasks(), "task", train_cap=10, test_cap=5, seed=3)
    with_val = partition(_tasks(), "task", train_cap=10, test_cap=5, seed=3, val_cap=6)
    for a, b in zip(without, with_val):
        assert a.test == b.test and a.train == b.train and a.val == [] and len(b.val) == 6
        assert not set(b.val) & (set(b.train) | set(b.test))
    # real task files: the same holds through the loader
    cfg = dict(source="natural_instructions", path=str(FIXTURES / "ni"), train_per_client=4, test_per_client=3)
    plain = load_clients(DataConfig(**cfg, val_per_client=0), seed=1)
    validated = load_clients(DataConfig(**cfg, val_per_client=2), seed=1)
    assert [c.test for c in plain] == [c.test for c in validated]
    assert all(len(c.val) == 2 and not set(c.val) & set(c.train + c.test) for c in validated)


def test_a_client_short_of_data_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="mira.data.partition"):
        small = partition(_tasks(12), "task", train_cap=10, test_cap=5, seed=0, val_cap=4)
    assert (len(small[0].train), len(small[0].test), len(small[0].val)) == (6, 4, 2)
    assert "client t0 has 12 examples, fewer than asked (train 10, test 5, validation 4): it gets train 6, " \
           "test 4, validation 2" in caplog.text


def test_each_client_keeps_its_lowest_validation_adapter(tiny_config, tmp_path):
    cfg = tiny_config("name=sel", "data.val_per_client=6", "federation.rounds=3", "train.lr=1.0",
                      "federation.algorithm=local", "federation.sample_fraction=1.0")
    result = run(cfg, progress=False)
    history = result.history
    assert all("val_loss" in r and "local_loss" in r for r in history)
    selected = history[-1]["selected"]
    names = [c.name for c in result.clients]
    ws = build_workspace(cfg)
    layout = ws.slot.layout
    chosen_rounds = set()
    for k, name in enumerate(names):
        curve = [r["val_loss"][name] for r in history]
        best = min(range(len(curve)), key=curve.__getitem__)
        assert selected["round"][name] == history[best]["round"]
        assert selected["val_loss"][name] == curve[best]
        chosen_rounds.add(best)
        theta = load_adapter(cfg.run_dir / "adapters" / "selected" / f"{name}.safetensors", layout)
        val, test = (losses_on(ws.model, ws.slot, theta[None], s[k], 16, ws.pad_id)[0]
                     for s in (ws.val_sets, ws.test_sets))
        assert abs(val - curve[best]) < 1e-5 and abs(test - selected["local_loss"][name]) < 1e-5
        if best == len(curve) - 1:
            assert torch.equal(theta, result.thetas[k])
    assert len(chosen_rounds) > 1, "every client peaked at the same round; raise train.lr to make the test bite"
    assert abs(selected["mean_local_loss"] - sum(selected["local_loss"].values()) / len(names)) < 1e-9
    assert "global_loss" in selected and "rouge_l" in selected

    out = tmp_path / "peft-selected"
    assert main(["export", str(cfg.run_dir), "--client", names[0], "--selected", "--out", str(out)]) == 0
    exported = load_file(out / "adapter_model.safetensors")
    mine = load_file(cfg.run_dir / "adapters" / "selected" / f"{names[0]}.safetensors")
    assert exported.keys() == mine.keys() and all(torch.equal(exported[key], mine[key]) for key in mine)


def test_only_clients_whose_selected_adapter_changed_are_evaluated_again(tiny_config, evaluations):
    cfg = tiny_config("name=selpass", "data.val_per_client=6", "federation.rounds=3", "train.lr=1.0",
                      "federation.algorithm=local", "federation.sample_fraction=1.0", "eval.global_loss_clients=3")
    result = run(cfg, progress=False)
    _, asked, known, answered = evaluations[-1]
    changed = {k for k in range(len(result.thetas)) if not torch.equal(result.selection.thetas[k], result.thetas[k])}
    rows = set(global_loss_clients(cfg, len(result.thetas)))
    assert 0 < len(changed) < len(result.thetas) - len(rows), "raise train.lr or the rounds to make the test bite"
    assert changed & rows, "no selected adapter in the global loss; change the seed or the rows"
    assert set(asked) == changed | rows
    # every selected adapter was scored when it was selected: no client recomputes its own losses, and a
    # global-loss client whose selected adapter is its final one only scores the new adapters on its test set
    assert known == set(asked) and answered == rows - changed and answered
    # the merged record is what evaluating every selected adapter afresh gives, to the bit
    full = evaluate(build_workspace(cfg), result.selection.thetas, full=True)
    selected = result.history[-1]["selected"]
    for key in ("local_loss", "global_loss", "rouge_l", "exact_match"):
        assert selected[key] == full[key] and selected[f"mean_{key}"] == full[f"mean_{key}"], key


def test_no_validation_means_no_selection(tiny_config, tmp_path, capsys):
    cfg = tiny_config("name=nosel", "data.val_per_client=0", "federation.rounds=1")
    result = run(cfg, progress=False)
    assert "selected" not in result.history[-1] and "val_loss" not in result.history[-1]
    assert not (cfg.run_dir / "adapters" / "selected" / f"{result.clients[0].name}.safetensors").exists()
    assert main(["export", str(cfg.run_dir), "--client", "0", "--selected", "--out", str(tmp_path / "o")]) == 2
    assert "no selected adapters" in capsys.readouterr().err
    assert json.loads((cfg.run_dir / "metrics.jsonl").read_text().splitlines()[-1])["round"] == 1
