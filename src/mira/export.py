"""Using a finished (or checkpointed) run: standard PEFT adapter directories, and answers from a
client's personalised model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .client import build_model
from .config import Config, load_config
from .data.encode import format_prompt
from .errors import MiraError
from .generation import greedy
from .lora import load_adapter
from .results import ADAPTERS, ARCHIVED, CLIENTS_JSON, SELECTED


class RunModel:
    """A run's base model with its adapter (LoRA or P-tuning) attached, and every client's adapter,
    ready to swap in."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.toml").is_file() or not (self.run_dir / CLIENTS_JSON).is_file():
            raise FileNotFoundError(f"{self.run_dir}: not a mira run directory (config.toml, {CLIENTS_JSON} missing)")
        if (self.run_dir / ARCHIVED).is_file():
            raise FileNotFoundError(f"{self.run_dir}: the archived record of a run (metrics, no adapters); "
                                    "use the run's own folder")
        self.cfg: Config = load_config(self.run_dir / "config.toml")
        self.clients: list[dict] = json.loads((self.run_dir / CLIENTS_JSON).read_text())
        self.model, self.tokenizer, self.slot = build_model(self.cfg)

    def client_index(self, client: str) -> int:
        """A client by name or by index."""
        names = [c["name"] for c in self.clients]
        if client in names:
            return names.index(client)
        if client.isdigit() and int(client) < len(names):
            return int(client)
        raise MiraError(f"no client {client!r} in {self.run_dir}; clients: {', '.join(names)}")

    def adapter(self, k: int, selected: bool = False) -> torch.Tensor:
        """Client k's final adapter (or, with `selected`, the one of its lowest validation loss), or
        its adapter in the last checkpoint if the run did not finish."""
        folder = self.run_dir / ADAPTERS / (SELECTED if selected else "")
        path = folder / f"{self.clients[k]['name']}.safetensors"
        if path.is_file():
            return load_adapter(path, self.slot.layout)
        if selected:
            raise FileNotFoundError(f"{self.run_dir}: no selected adapters ({folder} is written when a run with "
                                    "validation data, data.val_per_client > 0, finishes)")
        return load_checkpoint(self.run_dir).thetas[k]

    def use(self, k: int, selected: bool = False) -> None:
        self.slot.set(self.adapter(k, selected))

    def export(self, k: int, out_dir: str | Path, selected: bool = False) -> Path:
        """Write client k's adapter as a PEFT directory (adapter_config.json + adapter_model.safetensors)."""
        self.use(k, selected)
        out = Path(out_dir)
        self.model.save_pretrained(out)
        return out

    @torch.no_grad()
    def generate(self, k: int, prompt: str, max_new_tokens: int = 64) -> str:
        """Client k's greedy answer to `prompt`, formatted as in training."""
        self.use(k)
        text = format_prompt(prompt, self.tokenizer, self.cfg.model.prompt_format)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        out = greedy(self.model, self.tokenizer, ids["input_ids"], ids["attention_mask"], max_new_tokens)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
