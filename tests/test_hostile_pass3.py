"""The third hostile pass (issue #35): each test here failed on the code before its fix."""

import json

import pytest
from safetensors.torch import load_file, save_file

from mira.checkpoint import CHECKPOINT, _digest, load_checkpoint
from mira.simulation import run


def test_the_checkpoint_digest_covers_the_round_and_a_missing_digest_is_an_error(tiny_config):
    cfg = tiny_config("name=digest", "federation.rounds=2")
    run(cfg, progress=False)
    path = cfg.run_dir / CHECKPOINT
    good = path.read_bytes()
    assert b'\\"round\\": 2' in good
    path.write_bytes(good.replace(b'\\"round\\": 2', b'\\"round\\": 3'))  # one flipped bit: 2 -> 3
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(cfg.run_dir)

    path.write_bytes(good)
    tensors = load_file(path)
    meta = json.loads(json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]["mira"])
    del meta["digest"]
    tensors["thetas"] += 1.0
    save_file(tensors, path, metadata={"mira": json.dumps(meta)})
    with pytest.raises(ValueError, match="carries no digest"):
        load_checkpoint(cfg.run_dir)
    # a checkpoint of the earlier format (its digest covers the tensors only) claiming a later round
    legacy = {k: v for k, v in meta.items() if k != "format"} | {"round": 3}
    tensors["thetas"] -= 1.0
    save_file(tensors, path, metadata={"mira": json.dumps(legacy | {"digest": _digest(tensors, legacy)})})
    with pytest.raises(ValueError, match="checkpoint is of round 3, but metrics.jsonl records rounds up to 2"):
        run(cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"rounds": 4})}), progress=False,
            resume=True)
    path.write_bytes(good)
    assert load_checkpoint(cfg.run_dir).round == 2


def test_adapter_files_are_byte_reproducible(tmp_path):
    import torch

    from mira.config import ModelConfig
    from mira.lora import AdapterSlot, load_adapter, save_adapter
    from mira.model import attach_adapter, tiny_model

    slot = AdapterSlot(attach_adapter(tiny_model()[0], ModelConfig(name="tiny-random"), seed=0))
    theta = torch.randn(slot.layout.numel)
    meta = {"client": "ünïcode-client", "family": "f", "round": "3", "algorithm": "mira", "seed": "0"}
    files = set()
    for i in range(12):
        save_adapter(tmp_path / f"{i}.safetensors", theta, slot.layout, meta)
        files.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(files) == 1
    assert torch.equal(load_adapter(tmp_path / "0.safetensors", slot.layout), theta)
