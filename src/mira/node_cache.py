"""A node-local cache for the Flower ClientApp, which Flower starts in a fresh process for every
message: a node's client data (loaded, partitioned, split) and their token ids are built by the
first message of a run and read back by the next ones (tens of milliseconds instead of a second or
more on real data).

An entry is keyed by everything it depends on: the data section of the configuration and the seed,
the path, size and modification time of every source file, the source code of mira's data package,
and for token ids the examples themselves, the tokenizer and the encoding settings. Changing any of
these makes a new entry, never a stale hit. Data read from the Hugging Face Hub are not cached (the
hub's copy can change under the same name). Entries live in $MIRA_NODE_CACHE, else
<mira cache>/nodes (see `mira.model.cache_dir`); deleting the folder is always safe.

Entries are plain JSON (never pickle: reading one runs no code), written owner-only (0600 in a 0700
folder). An entry is used only if this user owns it, no one else can write it, and the full key stored
in it is the key asked for; any other file under its name is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Callable, TypeVar

from .config import Config
from .data import ClientData, Example
from .data.encode import Encoded

T = TypeVar("T")
_DATA_CODE = Path(__file__).parent / "data"


def node_cache_dir() -> Path:
    if os.environ.get("MIRA_NODE_CACHE"):
        return Path(os.environ["MIRA_NODE_CACHE"])
    from .model import cache_dir

    return cache_dir() / "nodes"


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _own(path: Path) -> bool:
    """Whether `path` is a regular file of this user that no one else can write."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def cached(kind: str, key, build: Callable[[], T], encode: Callable[[T], object], decode: Callable[[object], T]) -> T:
    """The entry of `kind` for `key` (any JSON-able value), built by `build` and stored if absent, unreadable
    or not this node's own; `encode` and `decode` turn the value into JSON-able data and back."""
    full = digest(key)
    path = node_cache_dir() / f"{kind}-{full[:40]}.json"
    if _own(path):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry.get("key") == full:
                return decode(entry["value"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    value = build()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump({"key": full, "value": encode(value)}, out)
    tmp.replace(path)  # atomic: a concurrent reader sees the old entry or the whole new one
    return value


def _client_to_json(value: tuple[ClientData, int]) -> dict:
    client, count = value
    return {"client": asdict(client), "count": count}


def _examples(items: list[dict]) -> list[Example]:
    return [Example(e["prompt"], e["response"], tuple(e["references"])) for e in items]


def _client_from_json(data: dict) -> tuple[ClientData, int]:
    c = data["client"]
    client = ClientData(str(c["name"]), str(c["family"]), _examples(c["train"]), _examples(c["test"]),
                        {str(k): int(v) for k, v in c["task_counts"].items()}, _examples(c["val"]))
    return client, int(data["count"])


def _sets_to_json(sets) -> list:
    return [[[e.input_ids, e.labels] for e in part] for part in sets]


def _sets_from_json(data: list) -> tuple[list[Encoded], ...]:
    return tuple([Encoded([int(i) for i in ids], [int(i) for i in labels]) for ids, labels in part] for part in data)


def _files_state(path: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime in ns) of a file, or of every file under a directory."""
    if not path:
        return []
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    state = []
    for file in files:
        if file.exists():
            stat = file.stat()
            state.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    return state


@cache
def _code_state() -> str:
    """Hash of mira's data code (read once per process)."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(_DATA_CODE.glob("*.py")))).hexdigest()


def client_data(cfg: Config, node_config: dict, build: Callable[[], tuple[ClientData, int]]) -> tuple[ClientData, int]:
    """(the data of the client a node holds, number of clients the data make), from the cache or `build`;
    keyed by the node's config too (its partition id, data location and their checks)."""
    if cfg.data.source == "dolly" and not cfg.data.path:
        return build()  # the Hub's copy: not ours to fingerprint
    key = {"data": cfg.data.model_dump(), "seed": cfg.seed, "node": {k: str(v) for k, v in node_config.items()},
           "code": _code_state(),
           "files": _files_state(cfg.data.path) + _files_state(cfg.data.families)}
    return cached("client", key, build, _client_to_json, _client_from_json)


def encoded_sets(cfg: Config, tokenizer, client: ClientData, build: Callable[[], T]) -> T:
    """`client`'s examples as token ids (what `build` makes), from the cache when the same examples
    were encoded with the same tokenizer and settings before."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return build()  # a slow (Python) tokenizer has no serialisable state to key on
    examples = [[(e.prompt, e.response, list(e.references)) for e in part]
                for part in (client.train, client.val, client.test)]
    key = {"examples": digest(examples), "tokenizer": digest(backend.to_str()), "code": _code_state(),
           "chat_template": getattr(tokenizer, "chat_template", None), "eos": tokenizer.eos_token_id,
           "max_length": cfg.model.max_length, "prompt_format": cfg.model.prompt_format}
    return cached("encoded", key, build, _sets_to_json, _sets_from_json)
