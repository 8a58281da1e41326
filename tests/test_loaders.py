import json
from collections import Counter
from pathlib import Path

import pytest

from mira.config import DataConfig
from mira.data import DataError, Task, load_clients
from mira.data.loaders import load_dolly, load_natural_instructions, load_records
from mira.data.partition import partition, split_client, summary

FIXTURES = Path(__file__).parent / "fixtures"


def test_dolly_loader_one_task_per_category():
    tasks = load_dolly(str(FIXTURES / "dolly_sample.jsonl"))
    assert [t.name for t in tasks] == sorted(t.name for t in tasks) and len(tasks) == 8
    assert all(len(t.examples) == 6 for t in tasks)
    with_context = [e for t in tasks for e in t.examples if "Context:" in e.prompt]
    assert len(with_context) == 16 and with_context[0].prompt.startswith("Question 0 about")
    assert tasks[0].examples[0].references == (tasks[0].examples[0].response,)


def test_natural_instructions_loader():
    tasks = load_natural_instructions(str(FIXTURES / "ni"), num_positive=1)
    assert [t.name for t in tasks] == ["task001_capital", "task002_currency", "task003_sentiment"]
    assert [t.family for t in tasks] == ["countries", "countries", "poems"]
    ex = tasks[1].examples[0]  # Definition given as a list; instances with ids
    assert ex.prompt.startswith("Definition: Give the currency of the country.")
    assert "Example 1:\nInput: in A\nOutput: out A" in ex.prompt and "Example 2" not in ex.prompt
    assert ex.prompt.endswith("Input: France\nOutput:")
    assert ex.response == "Euro" and ex.references == ("Euro", "euro")
    relabelled = load_natural_instructions(str(FIXTURES / "ni"), families={"task003_sentiment": "countries"})
    assert {t.family for t in relabelled} == {"countries"}


def test_generic_records_csv():
    tasks = load_records(str(FIXTURES / "records.csv"), "question", "answer", task_field="topic")
    assert sorted((t.name, len(t.examples)) for t in tasks) == [("math", 6), ("more math", 6)]
    whole = load_records(str(FIXTURES / "records.csv"), "question", "answer")
    assert [t.name for t in whole] == ["records"] and whole[0].examples[3].response == "6"


@pytest.mark.parametrize("line,match", [
    ('{"instruction": "q", "context": "", "response": "a", "category": "open_qa"', r"bad\.jsonl:2: invalid JSON"),
    ('{"instruction": "q", "context": "", "category": "open_qa"}', r"bad\.jsonl:2: missing field 'response'"),
    ('{"instruction": "q", "context": "", "response": 3, "category": "open_qa"}', "field 'response' must be a string"),
    ('{"instruction": "q", "context": "", "response": "a", "category": "poetry"}', r"bad\.jsonl:2: field 'category' is 'poetry'; expected one of"),
    ('["not", "an", "object"]', r"bad\.jsonl:2: expected a JSON object"),
])
def test_dolly_bad_input(tmp_path, line, match):
    good = '{"instruction": "q", "context": "", "response": "a", "category": "open_qa"}'
    (tmp_path / "bad.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=match):
        load_dolly(str(tmp_path / "bad.jsonl"))


def _ni(tmp_path, **changes):
    data = json.loads((FIXTURES / "ni" / "task001_capital.json").read_text()) | changes
    path = tmp_path / "task999_bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("changes,match", [
    ({"Instances": []}, "'Instances' is missing or empty"),
    ({"Instances": [{"input": "x", "output": []}]}, "instance 0: field 'output' must be a non-empty list"),
    ({"Instances": [{"id": "q7", "output": ["y"]}]}, r"instance 0 \(id q7\): missing field 'input'"),
    ({"Definition": 5}, "'Definition' must be a string"),
])
def test_natural_instructions_bad_input(tmp_path, changes, match):
    _ni(tmp_path, **changes)
    with pytest.raises(DataError, match=match):
        load_natural_instructions(str(tmp_path))


def test_missing_sources_and_unknown_tasks(tmp_path):
    with pytest.raises(DataError, match="no Natural Instructions task files"):
        load_natural_instructions(str(tmp_path))
    with pytest.raises(DataError, match="not a readable data file"):
        load_dolly(str(tmp_path / "none.jsonl"))
    cfg = DataConfig(source="dolly", path=str(FIXTURES / "dolly_sample.jsonl"), tasks=["open_qa", "poetry"])
    with pytest.raises(DataError, match="unknown task.*poetry.*available: brainstorming"):
        load_clients(cfg, seed=0)


def _tasks():
    return [Task(f"t{i}", "f", [f"ex{i}-{j}" for j in range(40)]) for i in range(3)]


def test_partition_by_task_caps_and_splits_deterministically():
    a = partition(_tasks(), "task", train_cap=10, test_cap=5, seed=0)
    assert [(c.name, len(c.train), len(c.test)) for c in a] == [(f"t{i}", 10, 5) for i in range(3)]
    assert not set(a[0].train) & set(a[0].test)
    assert a[0].train == partition(_tasks(), "task", 10, 5, seed=0)[0].train
    assert a[0].train != partition(_tasks(), "task", 10, 5, seed=1)[0].train


def test_partition_split_dirichlet_iid():
    split = partition(_tasks(), "split", 16, 4, seed=0, clients_per_task=2)
    assert [c.name for c in split][:2] == ["t0#0", "t0#1"] and all(len(c.train) == 16 for c in split)
    assert not set(split[0].train) & set(split[1].train)
    iid = partition(_tasks(), "iid", 100, 6, seed=0, num_clients=4)
    assert sum(len(c.train) + len(c.test) for c in iid) == 120
    assert all(len(c.task_counts) == 3 for c in iid)  # iid: every client sees every task
    skewed = partition(_tasks(), "dirichlet", 100, 2, seed=0, num_clients=4, alpha=0.1)
    assert sum(len(c.train) + len(c.test) for c in skewed) == 120
    assert sum(max(Counter(e.split("-")[0] for e in c.train).values()) / len(c.train) for c in skewed) / 4 > 0.8


def test_empty_test_split_is_an_error():
    with pytest.raises(DataError, match="client001 received 0 example.*raise data.alpha"):
        partition(_tasks(), "dirichlet", 100, 2, seed=0, num_clients=4, alpha=0.05)
    with pytest.raises(DataError, match="client t0: 1 example"):
        split_client("t0", "f", ["only"], 10, 5)
    small = split_client("t1", "f", list("abcdef"), 10, 5)
    assert (len(small.train), len(small.test)) == (4, 2)


def test_summary_lists_counts():
    text = summary(partition(_tasks(), "task", 10, 5, seed=0))
    assert text.splitlines()[1].split() == ["t0", "f", "10", "0", "5"]  # train, validation, test
    mixed = partition(_tasks(), "iid", 100, 6, seed=0, num_clients=2)
    lines = summary(mixed).splitlines()
    assert lines[0].split()[-3:] == ["t0", "t1", "t2"]
    assert sum(int(x) for x in lines[1].split()[-3:]) == int(lines[1].split()[2])
