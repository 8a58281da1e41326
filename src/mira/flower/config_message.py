"""The configuration part of every message (torch-free, so a node can read it without loading the model):
the server's whole configuration as TOML, the round and what to evaluate, in a ConfigRecord."""

from __future__ import annotations

import tomllib

from flwr.app import ConfigRecord

from ..config import Config, config_text, from_dict

CONFIG, METRICS = "config", "metrics"


def config_record(cfg: Config, round_: int, generate: bool = False, test: bool = True,
                  losses: bool = True) -> ConfigRecord:
    """The server's whole configuration (so clients need no copy of it: their client step follows
    its federation.algorithm), the round and what to evaluate (`test` false: the validation set only;
    `losses` false: not the adapter's own losses, which the server has)."""
    return ConfigRecord({"mira-config": config_text(cfg), "round": round_, "generate": generate, "test": test,
                         "losses": losses})


def read_config(record: ConfigRecord) -> tuple[str, Config]:
    """The server's configuration (its TOML text and the parsed Config) from a message's config record."""
    text = str(record["mira-config"])
    return text, from_dict(tomllib.loads(text), source="configuration sent by the server")
