"""Integration tests on the real data in ../shared/data (skipped where it is absent)."""

from collections import Counter
from pathlib import Path

import pytest

from mira.config import load_config
from mira.data import load_clients, load_tasks
from mira.data.loaders import load_dolly

from .conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
NI = SHARED_DATA / "natural-instructions" / "tasks"
DOLLY = SHARED_DATA / "dolly" / "databricks-dolly-15k.jsonl"


@pytest.mark.skipif(not NI.is_dir(), reason=f"real Natural Instructions files not found at {NI}")
def test_real_natural_instructions_one_client_per_task():
    cfg = load_config(ROOT / "configs" / "natural_instructions.toml",
                      [f"data.path='{NI}'", f"data.families='{ROOT / 'configs' / 'ni_families.json'}'"])
    clients = load_clients(cfg.data, seed=0)
    assert [c.name for c in clients] == cfg.data.tasks and len(clients) == 16  # the families' 16 tasks
    assert len({c.family for c in clients}) == 6
    for c in clients:
        assert (len(c.train), len(c.test)) == (48, 16)
        assert not {e.prompt for e in c.train} & {e.prompt for e in c.test}
    capital = next(c for c in clients if c.name == "task1146_country_capital")
    assert capital.family == "country-facts" and capital.train[0].prompt.startswith("Definition: ")


@pytest.mark.skipif(not DOLLY.is_file(), reason=f"Dolly-15k file not found at {DOLLY}")
def test_real_dolly_categories():
    tasks = load_dolly(str(DOLLY))
    counts = {t.name: len(t.examples) for t in tasks}
    assert counts == {"brainstorming": 1589, "classification": 1922, "closed_qa": 1596, "creative_writing": 638,
                      "general_qa": 1972, "information_extraction": 1355, "open_qa": 3368, "summarization": 1069}
    cfg = load_config(ROOT / "configs" / "dolly.toml", [f"data.path='{DOLLY}'"])
    assert [c.name for c in load_clients(cfg.data, seed=0)] == sorted(counts)
    mixed = load_config(None, ["data.source=dolly", f"data.path='{DOLLY}'", "data.partition=dirichlet",
                               "data.num_clients=20", "data.alpha=0.3"])
    clients = load_clients(mixed.data, seed=0)
    assert len(clients) == 20 and len(load_tasks(mixed.data, 0)) == 8
    assert Counter(len(c.task_counts) for c in clients).most_common(1)[0][0] < 8


@pytest.mark.skipif(not (NI.is_dir() and DOLLY.is_file()), reason=f"real data not found under {SHARED_DATA}")
def test_paper_presets_make_80_clients_sampled_at_10_percent():
    for preset, path in (("paper_ni", NI), ("paper_dolly", DOLLY)):
        cfg = load_config(ROOT / "configs" / f"{preset}.toml", [f"data.path='{path}'"])
        clients = load_clients(cfg.data, seed=0)
        assert len(clients) == 80 and len({c.name for c in clients}) == 80, preset
        assert (cfg.federation.rounds, cfg.federation.sample_fraction, cfg.train.batch_size, cfg.model.lora_r,
                cfg.mira.graph.kind) == (60, 0.1, 8, 16, "random")
        assert all(c.train and c.test for c in clients)


@pytest.mark.skipif(not NI.is_dir(), reason=f"real Natural Instructions files not found at {NI}")
def test_the_ni_paper_preset_gives_80_clients_80_distinct_tasks_within_the_caps():
    import json

    cfg = load_config(ROOT / "configs" / "paper_ni.toml", [f"data.path='{NI}'"])
    clients = load_clients(cfg.data, seed=0)
    assert len(clients) == 80 and len({c.name for c in clients}) == 80
    assert all(list(c.task_counts) == [c.name] for c in clients)  # each client holds exactly its own task
    for c in clients:
        instances = len(json.loads((NI / f"{c.name}.json").read_text())["Instances"])
        assert len(c.train) == min(cfg.data.train_per_client, int(cfg.data.train_fraction * instances))
        assert (len(c.val), len(c.test)) == (cfg.data.val_per_client, cfg.data.test_per_client)
        assert not {e.prompt for e in c.train} & {e.prompt for e in c.test}
    categories = Counter(c.family for c in clients)
    assert len(categories) >= 30 and "Program Execution" in categories and "Speaker Identification" in categories
