"""What travels in Flower messages: each entry of an algorithm's message as an ArrayRecord (a whole
adapter as its tensors keyed by PEFT parameter names; anything else — part of one, e.g. only the LoRA
A matrices, or FedKSeed's seed scalars and indices — as one flat array). The configuration and
round travel as a ConfigRecord (config_message.py)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord

from ..algorithms import Message
from ..lora import AdapterLayout

ALL_ADAPTERS = "all-adapters"
VALUES = "values"
"""The one array of an entry that is not a whole adapter."""
INTEGERS = "integers"
"""The one array of an entry of integers (int32, never rounded)."""


def _encode(tensor: torch.Tensor, precision: str) -> torch.Tensor:
    # Integers (e.g. FedKSeed's seed indices) travel as they are. NumPy has no bfloat16: its bits
    # travel as int16 and are viewed back on arrival.
    if not tensor.is_floating_point():
        return tensor.int()
    return tensor.to(torch.bfloat16).view(torch.int16) if precision == "bfloat16" else tensor.float()


def _decode(tensor: torch.Tensor, precision: str, integer: bool = False) -> torch.Tensor:
    if integer:
        if tensor.dtype != torch.int32:
            raise ValueError(f"expected int32, got {tensor.dtype}")
        return tensor
    if precision == "bfloat16":
        if tensor.dtype != torch.int16:
            raise ValueError(f"expected bfloat16 bits (int16), got {tensor.dtype}")
        return tensor.view(torch.bfloat16).float()
    if tensor.dtype != torch.float32:
        raise ValueError(f"expected float32, got {tensor.dtype}")
    return tensor


def adapter_record(vector: torch.Tensor, layout: AdapterLayout, precision: str) -> ArrayRecord:
    """One adapter (a flat vector) as an ArrayRecord of its LoRA matrices, keyed by PEFT names."""
    return ArrayRecord(torch_state_dict={k: _encode(v, precision).contiguous() for k, v in layout.unflatten(vector).items()})


def read_adapter(record: ArrayRecord, layout: AdapterLayout, precision: str) -> torch.Tensor:
    """The flat adapter in `record`; ValueError if a name, shape or dtype is not the layout's."""
    return layout.flatten({k: _decode(v, precision) for k, v in record.to_torch_state_dict().items()})


def entry_record(vector: torch.Tensor, layout: AdapterLayout, precision: str) -> ArrayRecord:
    """One message entry: a whole adapter by PEFT names, anything else as one flat array."""
    if vector.is_floating_point() and vector.numel() == layout.numel:
        return adapter_record(vector, layout, precision)
    return ArrayRecord(torch_state_dict={INTEGERS if not vector.is_floating_point() else VALUES:
                                         _encode(vector, precision).contiguous()})


def read_entry(record: ArrayRecord, layout: AdapterLayout, precision: str) -> torch.Tensor:
    if list(record) in ([VALUES], [INTEGERS]):
        (key, tensor), = record.to_torch_state_dict().items()
        return _decode(tensor, precision, integer=key == INTEGERS)
    return read_adapter(record, layout, precision)


def record_bytes(record: ArrayRecord) -> int:
    """The bytes of the values a record carries (what the traffic metrics count; not the framing)."""
    return sum(array.numpy().nbytes for array in record.values())


def message_content(message: Message, layout: AdapterLayout, precision: str) -> dict[str, ArrayRecord]:
    """An algorithm's message as records, one per entry (for a RecordDict)."""
    return {key: entry_record(vector, layout, precision) for key, vector in message.items()}


def read_message(content, layout: AdapterLayout, precision: str) -> Message:
    """The algorithm's message in a RecordDict: every ArrayRecord in it, as flat tensors."""
    return {key: read_entry(record, layout, precision) for key, record in content.array_records.items()}


def message_sizes(content) -> dict[str, int]:
    """The bytes of each message entry in a RecordDict."""
    return {key: record_bytes(record) for key, record in content.array_records.items()}


def adapters_record(thetas: torch.Tensor, precision: str) -> ArrayRecord:
    """Every client's adapter as one (K × P) array (for the global loss)."""
    return ArrayRecord(torch_state_dict={"thetas": _encode(thetas, precision).contiguous()})


def read_adapters(record: ArrayRecord, precision: str) -> torch.Tensor:
    return _decode(record.to_torch_state_dict()["thetas"], precision)
