"""Checkpoints of the whole federated state, written atomically (temp file + rename), no pickle.

A checkpoint is one file, `checkpoint.safetensors`: every client's adapter, the algorithm's server
state, the per-client model selection and each persistent optimiser state as tensors, and the round,
optimiser hyper-parameters and a SHA-256 digest of everything resume reads (the tensors, the round
and the optimiser hyper-parameters) as JSON in its metadata. Client sampling,
batch order and dropout are pure functions of (seed, client, round), so the round number is the
whole random state: a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import MiraError

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class Checkpoint:
    round: int
    thetas: torch.Tensor
    optimizer_states: dict[int, dict]
    server_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """The algorithm's own state (Ditto's global adapter, a learned graph)."""
    selection: dict[str, torch.Tensor] = field(default_factory=dict)
    """The per-client model selection (`Selection.state_dict`); empty in checkpoints older than it."""
    screening: dict[str, torch.Tensor] = field(default_factory=dict)
    """The latest accepted update norms, by message entry, that clip_to_median compares against."""


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files that an interrupted atomic write left in `run_dir`."""
    for tmp in run_dir.glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)


FORMAT = 2
"""Checkpoints of format 2 digest their metadata too; earlier ones (no "format") their tensors only."""


def _digest(tensors: dict[str, torch.Tensor], meta: dict) -> str:
    """SHA-256 of the metadata (`meta` without its digest; nothing for an earlier format) and of the
    tensors (names and bytes)."""
    covered = {k: v for k, v in meta.items() if k != "digest"}
    h = hashlib.sha256(json.dumps(covered, sort_keys=True).encode() if "format" in meta else b"")
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # no copy
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> None:
    """Write the state after round `ckpt.round`; a crash at any point leaves the previous one intact."""
    os.replace(stage_checkpoint(run_dir, ckpt), run_dir / CHECKPOINT)


def stage_checkpoint(run_dir: Path, ckpt: Checkpoint) -> Path:
    """Write the state after round `ckpt.round` to a temporary file in `run_dir` and return its path:
    `os.replace` it onto run_dir / CHECKPOINT to put it in place (a crash before that leaves the previous
    checkpoint, and a temporary that `remove_stale_temporaries` deletes)."""
    tensors = {"thetas": ckpt.thetas.contiguous()}
    tensors |= {f"server.{name}": value.contiguous() for name, value in ckpt.server_state.items()}
    tensors |= {f"selection.{name}": value.contiguous() for name, value in ckpt.selection.items()}
    tensors |= {f"screen.{name}": value.contiguous() for name, value in ckpt.screening.items()}
    optimizers = {}
    for k, state in ckpt.optimizer_states.items():
        params = {}
        for idx, pstate in state["state"].items():
            for name, value in pstate.items():
                tensors[f"opt.{k}.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
            params[str(idx)] = list(pstate)
        optimizers[str(k)] = {"param_groups": state["param_groups"], "params": params}
    tmp = run_dir / f".{CHECKPOINT}.tmp{os.getpid()}"
    meta = {"format": FORMAT, "round": ckpt.round, "optimizers": optimizers}
    save_file(tensors, str(tmp), metadata={"mira": json.dumps(meta | {"digest": _digest(tensors, meta)})})
    return tmp


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Read the checkpoint of `run_dir`; anything unreadable, incomplete or corrupted (its digest
    does not match) is a ValueError naming the file."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT} is written after "
                                "each round)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["mira"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if "digest" not in meta:
            raise ValueError("it carries no digest, so its integrity cannot be checked")
        if meta["digest"] != _digest(tensors, meta):
            raise ValueError("its contents do not match the digest stored with them: the file is corrupted")
        states = {}
        for k, info in meta["optimizers"].items():
            per_param = {int(idx): {name: tensors[f"opt.{k}.{idx}.{name}"] for name in names}
                         for idx, names in info["params"].items()}
            states[int(k)] = {"state": per_param, "param_groups": info["param_groups"]}
        def part(prefix):
            return {key.removeprefix(prefix): value for key, value in tensors.items() if key.startswith(prefix)}
        return Checkpoint(int(meta["round"]), tensors["thetas"], states, part("server."), part("selection."),
                          part("screen."))
    except (SafetensorError, KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
        reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MiraError(f"{path}: not a readable mira checkpoint ({reason})") from None
