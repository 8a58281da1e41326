"""The Flower node's cache of its client data and token ids: hits give what a fresh build gives, any
change to what an entry depends on misses, and the query message loads no model code."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from mira import node_cache
from mira.client import build_model, encode_client
from mira.data import load_clients
from mira.flower import clientapp as client_app
from mira.flower.config_message import CONFIG, config_record


def _counting(build):
    calls = []

    def counted():
        calls.append(1)
        return build()
    return counted, calls


def _write_records(path, answers):
    path.write_text("".join(json.dumps({"q": f"question {i}", "a": a, "t": "qa"}) + "\n" for i, a in enumerate(answers)))


def test_client_data_hits_until_its_source_file_changes(tiny_config, tmp_path):
    data = tmp_path / "records.jsonl"
    _write_records(data, [f"answer {i}" for i in range(40)])
    cfg = tiny_config("data.source=records", f"data.path='{data}'", "data.prompt_field=q", "data.response_field=a",
                      "data.task_field=t", "data.train_per_client=8", "data.test_per_client=4", "data.val_per_client=2")
    node = {"partition-id": 0, "num-partitions": 1}
    build, calls = _counting(lambda: (load_clients(cfg.data, cfg.seed)[0], 1))
    first = node_cache.client_data(cfg, node, build)
    again = node_cache.client_data(cfg, node, build)
    assert len(calls) == 1 and again == first and again[0].train[0].response.startswith("answer")
    assert node_cache.client_data(cfg, {**node, "num-partitions": 2}, build) == first and len(calls) == 2
    _write_records(data, [f"changed {i}" for i in range(40)])
    os.utime(data, ns=(1, 1))  # a different mtime even on a coarse clock
    changed = node_cache.client_data(cfg, node, build)
    assert len(calls) == 3 and changed[0].train[0].response.startswith("changed")
    cfg.seed += 1
    node_cache.client_data(cfg, node, build)
    assert len(calls) == 4


def test_cached_token_ids_equal_a_fresh_encoding_and_follow_the_settings(tiny_config):
    cfg = tiny_config()
    _, tokenizer, _ = build_model(cfg)
    client = load_clients(cfg.data, cfg.seed)[0]
    build, calls = _counting(lambda: encode_client(cfg, tokenizer, client))
    cached = node_cache.encoded_sets(cfg, tokenizer, client, build)
    assert node_cache.encoded_sets(cfg, tokenizer, client, build) == cached == encode_client(cfg, tokenizer, client)
    assert len(calls) == 1
    cfg.model.max_length = 48
    shorter = node_cache.encoded_sets(cfg, tokenizer, client, build)
    assert len(calls) == 2 and max(len(e.input_ids) for e in shorter[0]) <= 48


def _entry(cfg, node):
    """The client entry's file for `node`, after building it once (and the counted builder)."""
    client = load_clients(cfg.data, cfg.seed)[0]
    build, calls = _counting(lambda: (client, 9))
    node_cache.client_data(cfg, node, build)
    (entry,) = node_cache.node_cache_dir().glob("client-*.json")
    return entry, build, calls


def test_an_unreadable_entry_is_rebuilt(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MIRA_NODE_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config()
    entry, build, calls = _entry(cfg, {"partition-id": 3})
    entry.write_bytes(b"truncated")
    assert node_cache.client_data(cfg, {"partition-id": 3}, build)[1] == 9 and len(calls) == 2


def test_a_planted_cache_file_cannot_run_code_and_is_rebuilt(tiny_config, tmp_path, monkeypatch):
    """A pickle that would write a marker file when loaded, planted under an entry's name, is never
    executed; entries written by others, writable by others, or holding another key are rebuilt."""
    import pickle

    monkeypatch.setenv("MIRA_NODE_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config()
    entry, build, calls = _entry(cfg, {"partition-id": 0})
    assert oct(entry.stat().st_mode & 0o777) == "0o600" and oct(entry.parent.stat().st_mode & 0o777) == "0o700"
    fresh = node_cache.client_data(cfg, {"partition-id": 0}, build)
    assert len(calls) == 1

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    entry.write_bytes(pickle.dumps(Payload()))
    assert node_cache.client_data(cfg, {"partition-id": 0}, build) == fresh and len(calls) == 2
    assert not marker.exists()

    other = json.loads(entry.read_text())
    other["key"] = "0" * 64  # another node's entry copied in under this name
    other["value"]["client"]["name"] = "someone-else"
    entry.write_text(json.dumps(other))
    assert node_cache.client_data(cfg, {"partition-id": 0}, build)[0].name == fresh[0].name and len(calls) == 3

    assert node_cache.client_data(cfg, {"partition-id": 0}, build) == fresh and len(calls) == 3  # a hit again
    entry.chmod(0o666)  # writable by anyone: not trusted
    assert node_cache.client_data(cfg, {"partition-id": 0}, build) == fresh and len(calls) == 4


def test_the_package_never_unpickles():
    """No pickle, and no torch.load without weights_only=True, anywhere in mira."""
    import re
    from pathlib import Path

    import mira

    offenders = []
    for path in Path(mira.__file__).parent.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib|cloudpickle|shelve)\b|\bpickle\.(loads?|Unpickler)\b",
                     text, re.MULTILINE):
            offenders.append(f"{path.name}: pickle")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call}")
    assert not offenders


def test_the_query_message_reads_the_client_without_transformers_or_peft(tiny_config):
    cfg = tiny_config()
    text = config_record(cfg, 0)["mira-config"]
    script = f"""
import sys
from types import SimpleNamespace
from flwr.app import ConfigRecord
import mira.flower.clientapp as app
msg = SimpleNamespace(content={{"{CONFIG}": ConfigRecord({{"mira-config": {text!r}}})}})
_, _, client, k, count = app._node_client(msg, SimpleNamespace(node_config={{"partition-id": 1}}))
print(client.name, k, count, "transformers" in sys.modules, "peft" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = load_clients(cfg.data, cfg.seed)
    assert done.stdout.split() == [expected[1].name, "1", str(len(expected)), "False", "False"]


def test_the_client_app_workspace_equals_a_direct_build(tiny_config):
    cfg = tiny_config()
    msg = SimpleNamespace(content={CONFIG: config_record(cfg, 0)})
    for _ in range(2):  # a fresh process each time: the second reads the cache
        client_app._loaded.clear()
        ws, k, count = client_app._client(msg, SimpleNamespace(node_config={"partition-id": 2}))
        client = load_clients(cfg.data, cfg.seed)[2]
        assert (k, ws.ids, ws.clients) == (2, [2], [client])
        assert (ws.train_sets[0], ws.val_sets[0], ws.test_sets[0]) == encode_client(cfg, ws.tokenizer, client)
    assert len(list(node_cache.node_cache_dir().glob("encoded-*.json"))) >= 1
