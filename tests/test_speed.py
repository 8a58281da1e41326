"""What the speed work must keep exact: response-only training loss, length-grouped batches and
reused evaluations."""

import pytest
import torch

from mira.config import ModelConfig
from mira.data.encode import IGNORE, Encoded, batch_schedule, collate
from mira.evaluate import response_loss
from mira.lora import AdapterSlot
from mira.model import attach_adapter, lora_config, tiny_model


def _batch():
    g = torch.Generator().manual_seed(0)
    examples = []
    for prompt, response in [(5, 3), (9, 4), (2, 7), (12, 1)]:
        ids = torch.randint(3, 60, (prompt + response,), generator=g).tolist()
        examples.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
    return collate(examples, pad_id=0)


def test_response_only_loss_and_gradients_equal_the_full_computation():
    model, _ = tiny_model()
    model = attach_adapter(model, lora_config(ModelConfig(name="tiny-random", lora_dropout=0.0)), seed=0)
    slot = AdapterSlot(model)
    slot.set(torch.randn(slot.layout.numel, generator=torch.Generator().manual_seed(1)) * 0.1)
    batch = _batch()

    def loss_and_grads(compute):
        for p in slot.params:
            p.grad = None
        loss = compute()
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in slot.params])

    full, full_grads = loss_and_grads(lambda: model(**batch).loss)
    ours, our_grads = loss_and_grads(lambda: response_loss(model, batch))
    torch.testing.assert_close(ours, full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(our_grads, full_grads, rtol=1e-5, atol=1e-7)
    assert full_grads.abs().sum() > 0


def test_length_grouped_batches_draw_the_same_examples_with_less_padding():
    lengths = [10 + (i * 37) % 90 for i in range(48)]
    plain = batch_schedule(48, 8, steps=12, seed=3, client=5, round_=7)
    grouped = batch_schedule(48, 8, steps=12, seed=3, client=5, round_=7, lengths=lengths)
    assert grouped == batch_schedule(48, 8, steps=12, seed=3, client=5, round_=7, lengths=lengths)
    assert grouped != batch_schedule(48, 8, steps=12, seed=3, client=5, round_=8, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == sorted(i for b in plain for i in b)
    assert all(len(set(b)) == len(b) == 8 for b in grouped)

    def useful(batches):
        return sum(lengths[i] for b in batches for i in b) / sum(8 * max(lengths[i] for i in b) for b in batches)
    assert useful(grouped) > 0.8 > 0.6 > useful(plain)


def test_reused_evaluations_equal_fresh_ones_exactly(tiny_config, evaluations):
    """MIRA with a few clients sampled: each evaluation asks only for the clients whose adapter changed,
    and every recorded number equals evaluating all adapters afresh."""
    from mira.client import build_workspace
    from mira.rounds import global_loss_clients
    from mira.simulation import evaluate, run

    cfg = tiny_config("name=reuse", "federation.rounds=3", "federation.sample_count=2", "eval.global_loss_clients=4")
    result = run(cfg, progress=False)
    sampled = [set(r["sampled"]) for r in result.history]
    names = [c.name for c in result.clients]
    asked = [set(names) if clients is None else {names[k] for k in clients} for _, clients, _, _ in evaluations]
    assert asked[0] == set(names)  # round 0
    assert asked[1] == sampled[1] and asked[2] == sampled[2]  # rounds 1 and 2: the sampled clients only
    # round 3, the last: losses only from the clients sampled in it, answers from every client but those
    # never sampled (their round-0 answers stand), who are asked only for global-loss cells
    _, _, known, answered = evaluations[3]
    never = set(names) - set().union(*sampled)
    assert sampled[3] <= asked[3] and {names[k] for k in known} == asked[3] - sampled[3]
    assert {names[k] for k in answered} == asked[3] & never
    assert asked[3] - never - sampled[3], "no client asked for answers only; change the sampling"
    ws = build_workspace(cfg)
    fresh = evaluate(ws, result.thetas, full=True)
    final = result.history[-1]
    for key in ("local_loss", "val_loss", "global_loss", "rouge_l", "exact_match", "loss_matrix"):
        assert final[key] == fresh[key], key
    rows = global_loss_clients(cfg, len(names))
    assert len(rows) == 4 and len(final["loss_matrix"]) == 4


def test_records_split_a_rounds_wall_time_into_training_evaluation_answers_and_checkpoint(tiny_config):
    from mira.checkpoint import load_checkpoint
    from mira.results import read_history
    from mira.simulation import run

    cfg = tiny_config("name=timed", "federation.rounds=3", "federation.sample_count=3", "eval.eval_every=2",
                      "eval.global_loss=false")
    result = run(cfg, progress=False)
    assert read_history(cfg.run_dir) == result.history
    first, *rounds = result.history
    assert 0 < first["generate_seconds"] < first["eval_seconds"] == first["wall_seconds"]
    for record in rounds:
        parts = record["train_seconds"] + record.get("eval_seconds", 0.0) + record["checkpoint_seconds"]
        assert record["checkpoint_seconds"] > 0 and parts <= record["wall_seconds"] < parts + 0.5
    assert "eval_seconds" in rounds[1] and "generate_seconds" not in rounds[1]  # round 2: losses, no answers
    assert 0 < rounds[2]["generate_seconds"] < rounds[2]["eval_seconds"]  # round 3, the last: answers too
    assert load_checkpoint(cfg.run_dir).round == 3 and not list(cfg.run_dir.glob(".*.tmp*"))


def test_a_crash_after_a_rounds_record_leaves_the_previous_checkpoint_and_resumes_exactly(tiny_config):
    """The checkpoint is staged before the round's record is written and put in place after the
    callbacks: a crash between the two leaves metrics ahead of the checkpoint, never behind."""
    from mira.callbacks import Callback
    from mira.checkpoint import load_checkpoint
    from mira.results import read_history
    from mira.simulation import run

    class CrashAtRound2(Callback):
        def on_round_end(self, record):
            if record["round"] == 2:
                raise RuntimeError("crashed")

    cheap = ("federation.rounds=3", "federation.sample_count=3", "eval.eval_every=3", "eval.generate_per_client=0",
             "eval.global_loss=false")
    cfg = tiny_config("name=crashed", *cheap)
    with pytest.raises(RuntimeError, match="crashed"):
        run(cfg, progress=False, callbacks=[CrashAtRound2()])
    assert read_history(cfg.run_dir)[-1]["round"] == 2 and load_checkpoint(cfg.run_dir).round == 1
    assert list(cfg.run_dir.glob(".*.tmp*")), "round 2's staged checkpoint"
    resumed = run(cfg, progress=False, resume=True)
    full = run(tiny_config("name=uncut", *cheap), progress=False)
    untimed = [[{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in h]
               for h in (resumed.history, full.history)]
    assert untimed[0] == untimed[1] and torch.equal(resumed.thetas, full.thetas)
    assert not list(cfg.run_dir.glob(".*.tmp*"))


def test_gradient_checkpointing_trains_the_same_adapter(tiny_config):
    from mira.client import build_workspace, train_client

    updates = []
    for checkpointing in ("false", "true"):
        ws = build_workspace(tiny_config(f"model.gradient_checkpointing={checkpointing}"))
        assert ws.model.base_model.model.is_gradient_checkpointing == (checkpointing == "true")
        updates.append(train_client(ws, 0, {"adapter": ws.initial_theta}, round_=1).reply["adapter"])
    assert not torch.equal(updates[0], updates[0] * 0)
    torch.testing.assert_close(updates[1], updates[0], rtol=1e-4, atol=1e-6)


def test_eager_attention_trains_the_same_adapter_and_evaluation_keeps_the_models_own(tiny_config):
    """train.attention changes the kernel of training only; in float32 the adapters agree to rounding."""
    from mira.client import build_workspace, train_client

    updates = []
    for attention in ("model", "eager"):
        ws = build_workspace(tiny_config(f"train.attention='{attention}'"))
        seen = []
        ws.model.register_forward_pre_hook(lambda *_: seen.append(ws.model.config._attn_implementation))
        updates.append(train_client(ws, 0, {"adapter": ws.initial_theta}, round_=1).reply["adapter"])
        assert set(seen) == {"sdpa" if attention == "model" else "eager"}
        assert ws.model.config._attn_implementation == "sdpa"  # restored for evaluation
    # the kernels round differently (by up to 1.2e-6 on an AMD EPYC's AVX-512) on entries of ~1e-3
    torch.testing.assert_close(updates[1], updates[0], rtol=1e-4, atol=1e-5)
    assert not torch.equal(updates[1], updates[0] * 0)


def test_quantized_loading_says_what_it_needs(tiny_config):
    import pytest

    from mira.model import load_base_model

    cfg = tiny_config("model.quantization='4bit'")
    with pytest.raises(ValueError, match="needs a hub id, a model directory or the embedded model"):
        load_base_model(cfg.model)
    if not torch.cuda.is_available():
        from mira.model import quantization_config
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            quantization_config("8bit")


def test_quantized_lora_trains_on_a_gpu(tiny_config, tmp_path):
    """8- and 4-bit base weights (bitsandbytes) under a float32 LoRA: a client's round changes its adapter."""
    import importlib.util

    import pytest

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("4/8-bit loading needs a CUDA GPU and bitsandbytes (none here)")
    from mira.client import build_workspace, train_client
    from mira.model import tiny_model

    model, tokenizer = tiny_model()
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    for bits in ("8bit", "4bit"):
        ws = build_workspace(tiny_config(f"model.name='{tmp_path / 'tiny'}'", f"model.quantization='{bits}'",
                                         "device='cuda'"))
        reply = train_client(ws, 0, {"adapter": ws.initial_theta}, round_=1).reply["adapter"]
        assert not torch.equal(reply, ws.initial_theta)


def test_flower_sends_a_client_its_own_adapter_only_where_it_is_scored(tiny_config, monkeypatch):
    """On Flower, a client asked only for global-loss cells (its losses and answers known) is sent the
    adapters to score, not its own."""
    from mira.algorithms import ADAPTER
    from mira.client import build_workspace, evaluate_client
    from mira.flower.config_message import CONFIG
    from mira.flower.serverapp import FlowerBackend
    from mira.flower.transport import ALL_ADAPTERS

    sent = {}
    monkeypatch.setattr(FlowerBackend, "refresh", lambda self: None)
    monkeypatch.setattr(FlowerBackend, "_exchange", lambda self, kind, contents, when: sent.update(contents) or {})
    cfg = tiny_config()
    ws = build_workspace(cfg)
    thetas = ws.initial_theta.repeat(3, 1)
    FlowerBackend(None, cfg, ws.slot.layout).evaluate(thetas, [0, 1, 2], generate=True, test=True,
                                                      cross={k: thetas for k in range(3)},
                                                      known=frozenset({1, 2}), answered=frozenset({0, 2}))
    assert [ADAPTER in sent[k] for k in range(3)] == [True, True, False]
    assert all(ALL_ADAPTERS in content for content in sent.values())
    assert [(bool(sent[k][CONFIG]["losses"]), bool(sent[k][CONFIG]["generate"])) for k in range(3)] == [
        (True, False), (False, True), (False, False)]
    column_only = evaluate_client(ws, 2, None, False, thetas, losses=False)  # what the node then computes
    assert column_only.local_loss is None and column_only.val_loss is None and len(column_only.column) == 3
