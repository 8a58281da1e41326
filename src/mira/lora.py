"""Adapter state as flat tensors: one row per client on the server, swapped into one model.

An adapter is flattened in the order of the model's trainable parameters (each LoRA A and B matrix,
layer by layer; for P-tuning, its virtual-token embeddings and prompt-encoder weights).
`AdapterLayout` remembers names and shapes, so a flat vector converts back to a PEFT-style state
dict (keys without the adapter name, as `get_peft_model_state_dict` writes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils import parameters_to_vector


def is_lora_a(name: str) -> bool:
    """Whether a PEFT parameter name is a LoRA A (down-projection) matrix."""
    return ".lora_A." in name


@dataclass(frozen=True)
class AdapterLayout:
    """Names and shapes of the adapter tensors, in flattening order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def numel(self) -> int:
        return sum(torch.Size(s).numel() for s in self.shapes)

    def lora_a_mask(self) -> torch.Tensor:
        """Boolean (P,): True at the coordinates of LoRA A matrices in the flat adapter."""
        return torch.cat([torch.full((torch.Size(shape).numel(),), is_lora_a(name))
                          for name, shape in zip(self.names, self.shapes)])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector into named tensors (views of `vector`)."""
        if vector.ndim != 1 or vector.numel() != self.numel:
            raise ValueError(f"adapter vector has shape {tuple(vector.shape)}, expected ({self.numel},)")
        sizes = [torch.Size(s).numel() for s in self.shapes]
        return {name: chunk.view(shape) for name, shape, chunk
                in zip(self.names, self.shapes, torch.split(vector, sizes))}

    def flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate named tensors in layout order; keys and shapes must match exactly."""
        missing = set(self.names) - set(state)
        extra = set(state) - set(self.names)
        if missing or extra:
            raise ValueError(f"adapter keys do not match the model: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(extra)[:3]}")
        for name, shape in zip(self.names, self.shapes):
            if tuple(state[name].shape) != shape:
                raise ValueError(f"adapter tensor {name} has shape {tuple(state[name].shape)}, expected {shape}")
        return torch.cat([state[name].reshape(-1).float() for name in self.names])


class AdapterSlot:
    """The trainable adapter parameters of one model (LoRA, or P-tuning's), read and written as one
    flat vector."""

    def __init__(self, model: torch.nn.Module, adapter_name: str = "default"):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters; attach an adapter first")
        self.params = [p for _, p in named]
        self.layout = AdapterLayout(
            names=tuple(n.replace(f".{adapter_name}.", ".") for n, _ in named),
            shapes=tuple(tuple(p.shape) for _, p in named),
        )

    def get(self) -> torch.Tensor:
        """A float32 CPU copy of the adapter currently in the model."""
        return parameters_to_vector(self.params).detach().float().cpu().clone()

    @torch.no_grad()
    def set(self, vector: torch.Tensor) -> None:
        """Copy a flat adapter vector into the model's adapter parameters (the vector is not aliased,
        so training never writes into it)."""
        if vector.numel() != self.layout.numel:
            raise ValueError(f"adapter has {vector.numel()} values, the model expects {self.layout.numel}")
        offset = 0
        for p in self.params:
            p.copy_(vector[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def save_adapter(path: Path, vector: torch.Tensor, layout: AdapterLayout, metadata: dict[str, str] | None = None) -> None:
    """Write one adapter as safetensors with PEFT key names."""
    tensors = {k: v.contiguous().clone() for k, v in layout.unflatten(vector).items()}
    save_file(tensors, str(path), metadata=metadata)
    _sort_metadata(Path(path))


def _sort_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its metadata keys sorted (safetensors writes them in a random
    order), so that the same adapter gives the same bytes; the header keeps its length."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # not the compact header safetensors writes: leave it as it is
            return
        f.seek(8)
        f.write(text.ljust(size))


def load_adapter(path: Path, layout: AdapterLayout) -> torch.Tensor:
    """Read an adapter written by `save_adapter`, checking keys and shapes against `layout`."""
    return layout.flatten(load_file(str(path)))
