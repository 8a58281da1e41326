"""The global loss on many clients: above eval.global_loss_clients a fixed seeded sample is scored
(its adapters on its test sets), the exact block of the full K x K evaluation."""

import torch

from mira.client import build_workspace
from mira.rounds import global_loss_clients
from mira.simulation import evaluate


def test_a_sampled_global_loss_is_the_sampled_block_of_the_full_matrix(tiny_config):
    cfg = tiny_config("data.num_clients=6", "data.partition=iid", "eval.generate_per_client=0",
                      "eval.global_loss_clients=0")
    ws = build_workspace(cfg)
    thetas = ws.initial_theta + 0.05 * torch.randn(6, ws.initial_theta.numel(), generator=torch.Generator().manual_seed(0))
    full = evaluate(ws, thetas, full=True)
    assert len(full["global_loss"]) == 6 and "global_loss_clients" not in full

    ws.cfg.eval.global_loss_clients = 3
    rows = global_loss_clients(ws.cfg, 6)
    assert len(rows) == 3 and rows == global_loss_clients(ws.cfg, 6)  # a fixed sample of the seed
    sampled = evaluate(ws, thetas, full=True)
    names = [ws.clients[k].name for k in rows]
    assert sampled["global_loss_clients"] == names and list(sampled["global_loss"]) == names
    block = torch.tensor(full["loss_matrix"])[rows][:, rows]
    assert torch.allclose(torch.tensor(sampled["loss_matrix"]), block)
    assert sampled["local_loss"] == full["local_loss"]
    ws.cfg.eval.global_loss = False
    assert "global_loss" not in evaluate(ws, thetas, full=True)


def test_answers_are_generated_with_the_clients_own_adapter_after_the_global_loss(tiny_config, monkeypatch):
    """The global loss puts every client's adapter in the model in turn; the client's answers (ROUGE-L)
    must still come from its own adapter, not the last one evaluated."""
    import mira.client

    cfg = tiny_config("data.num_clients=3", "data.partition=iid", "eval.global_loss_clients=0")
    ws = build_workspace(cfg)
    thetas = ws.initial_theta + 0.05 * torch.randn(3, ws.initial_theta.numel(), generator=torch.Generator().manual_seed(1))
    in_model = []
    monkeypatch.setattr(mira.client, "generation_scores",
                        lambda *args: in_model.append(ws.slot.get().clone()) or {"rouge_l": 0.0, "exact_match": 0.0})
    evaluate(ws, thetas, full=True)
    assert len(in_model) == 3
    for k in range(3):
        assert torch.equal(in_model[k], thetas[k])
