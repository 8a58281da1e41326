"""Adapters and configuration as Flower records (no processes)."""

import pytest
import torch
from flwr.app import ConfigRecord, RecordDict

from mira.config import load_config
from mira.flower.config_message import config_record, read_config
from mira.flower.transport import (
    adapter_record,
    adapters_record,
    message_content,
    message_sizes,
    read_adapter,
    read_adapters,
    read_message,
    record_bytes,
)
from mira.lora import AdapterLayout

LAYOUT = AdapterLayout(names=("layer.lora_A.weight", "layer.lora_B.weight"), shapes=((2, 3), (3, 2)))


def test_float32_round_trip_is_exact_and_keyed_by_peft_names():
    vector = torch.randn(12)
    record = adapter_record(vector, LAYOUT, "float32")
    assert list(record.keys()) == list(LAYOUT.names)
    assert torch.equal(read_adapter(record, LAYOUT, "float32"), vector)


def test_bfloat16_halves_the_bytes_and_rounds_to_bf16():
    vector = torch.randn(12)
    full, half = adapter_record(vector, LAYOUT, "float32"), adapter_record(vector, LAYOUT, "bfloat16")
    assert half.count_bytes() < full.count_bytes() and sum(a.numpy().nbytes for a in half.values()) == 24
    assert torch.equal(read_adapter(half, LAYOUT, "bfloat16"), vector.to(torch.bfloat16).float())
    thetas = torch.randn(3, 12)
    assert torch.equal(read_adapters(adapters_record(thetas, "bfloat16"), "bfloat16"), thetas.to(torch.bfloat16).float())
    # the traffic metrics count the values the records carry
    assert (record_bytes(full), record_bytes(half)) == (48, 24)


def test_part_of_an_adapter_travels_as_one_flat_array():
    vector = torch.randn(12)
    message = {"adapter": vector, "lora_a": vector[:6]}
    content = message_content(message, LAYOUT, "float32")
    assert list(content["lora_a"].to_torch_state_dict()) == ["values"]
    received = read_message(RecordDict(content | {"config": ConfigRecord({"round": 1})}), LAYOUT, "float32")
    assert received.keys() == message.keys() and all(torch.equal(received[k], message[k]) for k in message)
    assert message_sizes(RecordDict(content)) == {"adapter": 48, "lora_a": 24}


def test_a_mismatched_adapter_is_refused():
    other = AdapterLayout(names=("layer.lora_A.weight", "layer.lora_B.weight"), shapes=((2, 3), (2, 3)))
    with pytest.raises(ValueError, match="shape"):
        read_adapter(adapter_record(torch.zeros(12), other, "float32"), LAYOUT, "float32")
    with pytest.raises(ValueError, match="float32"):
        read_adapter(adapter_record(torch.zeros(12), LAYOUT, "bfloat16"), LAYOUT, "float32")


def test_config_travels_whole():
    cfg = load_config(None, ["federation.algorithm=ditto", "ditto.mu=0.3", "name=x"])
    record = config_record(cfg, 4, generate=True)
    _, received = read_config(record)
    assert received == cfg and record["round"] == 4 and record["generate"]
