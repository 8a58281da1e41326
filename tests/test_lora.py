import pytest
import torch

from mira.config import ModelConfig
from mira.lora import AdapterSlot, load_adapter, save_adapter
from mira.model import attach_adapter, lora_config, tiny_model


@pytest.fixture
def slot():
    model, _ = tiny_model()
    model = attach_adapter(model, lora_config(ModelConfig(name="tiny-random")), seed=0)
    return AdapterSlot(model)


def test_layout_names_follow_peft_and_cover_a_and_b(slot):
    names = slot.layout.names
    assert len(names) == 2 * 2 * 2  # 2 layers × (q_proj, v_proj) × (A, B)
    assert all(".default." not in n for n in names)
    assert any(n.endswith("q_proj.lora_A.weight") for n in names)
    assert slot.layout.numel == sum(p.numel() for p in slot.params)


def test_set_get_round_trip_changes_model(slot):
    vec = torch.randn(slot.layout.numel)
    slot.set(vec)
    assert torch.equal(slot.get(), vec)
    assert torch.equal(slot.params[0].detach().reshape(-1), vec[:slot.params[0].numel()])
    vec_before = vec.clone()
    with torch.no_grad():
        slot.params[0].add_(1.0)  # training the model must not write into the vector it came from
    assert torch.equal(vec, vec_before)
    with pytest.raises(ValueError, match="expects"):
        slot.set(torch.zeros(3))


def test_save_load_round_trip_is_exact(slot, tmp_path):
    vec = torch.randn(slot.layout.numel)
    save_adapter(tmp_path / "a.safetensors", vec, slot.layout, {"client": "x"})
    assert torch.equal(load_adapter(tmp_path / "a.safetensors", slot.layout), vec)


def test_load_rejects_mismatched_adapters(slot, tmp_path):
    other = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig(name="tiny-random", lora_r=4)), seed=0))
    save_adapter(tmp_path / "r4.safetensors", other.get(), other.layout)
    with pytest.raises(ValueError, match="has shape"):
        load_adapter(tmp_path / "r4.safetensors", slot.layout)
    qonly = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig(name="tiny-random", target_modules=["q_proj"])),
                                       0))
    save_adapter(tmp_path / "q.safetensors", qonly.get(), qonly.layout)
    with pytest.raises(ValueError, match="missing"):
        load_adapter(tmp_path / "q.safetensors", slot.layout)


def test_lora_init_depends_only_on_seed():
    a = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig()), seed=3)).get()
    b = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig()), seed=3)).get()
    c = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig()), seed=4)).get()
    assert torch.equal(a, b) and not torch.equal(a, c)
