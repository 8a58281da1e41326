"""The Python API: a federation run from code with clients passed in, nothing left on disk, and its
results as a DataFrame, a summary, adapters and a model that generates."""

import os

import pytest
import torch

import mira
from mira.model import tiny_model

TINY = {"model": {"name": "tiny-random"}, "device": "cpu", "seed": 3,
        "federation": {"rounds": 2, "sample_fraction": 1.0}, "mira": {"lam": 0.4},
        "train": {"local_steps": 2, "batch_size": 4, "lr": 0.05},
        "eval": {"eval_every": 1, "generate_per_client": 1, "max_new_tokens": 3, "global_loss_clients": 2}}


def _records(op: str, n: int):
    return [{"prompt": f"{i} {op} {i + 1}", "response": str(eval(f"{i} {op} {i + 1}"))} for i in range(n)]


CLIENTS = {"adder": {"train": _records("+", 12), "val": _records("+", 14)[12:], "test": _records("+", 16)[14:]},
           "multiplier": {"train": _records("*", 12), "test": _records("*", 15)[12:], "family": "arithmetic"}}


class Recorder(mira.Callback):
    def __init__(self):
        self.rounds, self.evaluated, self.checkpoints = [], [], []

    def on_round_end(self, record):
        self.rounds.append(record["round"])

    def on_evaluation(self, round_, record):
        self.evaluated.append((round_, record["mean_local_loss"]))

    def on_checkpoint(self, run_dir, round_):
        self.checkpoints.append(round_)
        assert (run_dir / "checkpoint.safetensors").is_file()


def test_a_run_from_python_with_own_clients_and_nothing_on_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    recorder = Recorder()
    run = mira.run(TINY, clients=CLIENTS, callbacks=[recorder])
    assert run.run_dir is None and set(os.listdir(tmp_path)) == before
    assert recorder.rounds == [0, 1, 2] and [r for r, _ in recorder.evaluated] == [0, 1, 2]
    assert recorder.checkpoints == [1, 2]

    history = run.history
    assert len(history) == 3 * 2 and list(history["client"][:2]) == ["adder", "multiplier"]
    assert {"round", "client", "family", "sampled", "local_loss", "val_loss", "rouge_l", "bytes_up"} <= set(history)
    final = history[history["round"] == 2].set_index("client")
    assert final.loc["adder", "local_loss"] == pytest.approx(run.records[-1]["local_loss"]["adder"])
    assert final.loc["multiplier", "family"] == "arithmetic" and final["sampled"].all()
    assert "adder" in run.summary() and "mean" in run.summary()

    adapter = run.adapter("adder")
    assert all(".lora_A." in k or ".lora_B." in k for k in adapter)
    model = run.model("adder")
    ids = run.tokenizer("1 + 2", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    assert not torch.equal(run.adapter("adder")["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"],
                           run.adapter("multiplier")["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])


def test_a_loaded_model_an_out_dir_and_save(tmp_path):
    model, tokenizer = tiny_model(seed=5)
    run = mira.run(mira.load_config(None, ["model.name=tiny-random", "federation.rounds=1", "data.train_per_client=8",
                                           "data.test_per_client=4", "train.local_steps=1", "eval.generate_per_client=0",
                                           "device=cpu", "name=given"]),
                   model=(model, tokenizer), out_dir=tmp_path / "runs")
    assert run.run_dir == tmp_path / "runs" / "given" and (run.run_dir / "adapters").is_dir()
    assert run.model(0).base_model.model is model  # the model passed in carries the adapters
    saved = run.save(tmp_path / "copy")
    from mira.export import RunModel

    reloaded = RunModel(saved)
    assert torch.equal(reloaded.adapter(1), run.thetas[1])
    with pytest.raises(mira.ConfigError, match="clients: x.train record 0"):
        mira.run(TINY, clients={"x": {"train": [{"prompt": 1}], "test": []}})


def test_the_cli_reports_bad_input_in_one_line_and_lets_bugs_raise(monkeypatch, capsys, tmp_path):
    import mira.simulation
    from mira.cli import main

    args = ["run", "--set", "model.name=tiny-random", "--set", f"out_dir='{tmp_path}'", "--no-progress"]

    def bug(*_, **__):
        raise ValueError("an internal bug")
    monkeypatch.setattr(mira.simulation, "run", bug)
    with pytest.raises(ValueError, match="an internal bug"):
        main(args)

    def bad_input(*_, **__):
        raise mira.MiraError("data.path: no such file")
    monkeypatch.setattr(mira.simulation, "run", bad_input)
    assert main(args) == 2 and capsys.readouterr().err == "mira: error: data.path: no such file\n"


class MlflowLogger(mira.Callback):
    """The docs' MLflow example (guide/python-api.md)."""

    def __init__(self):
        import mlflow
        self.mlflow = mlflow
        mlflow.start_run()

    def on_evaluation(self, round_, record):
        self.mlflow.log_metric("mean_local_loss", record["mean_local_loss"], step=round_)


def test_an_mlflow_logger_is_a_few_lines(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is a test extra: pip install -e '.[test]'")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logger = MlflowLogger()
    run = mira.run(TINY, clients=CLIENTS, callbacks=[logger])
    mlflow.end_run()
    logged = mlflow.MlflowClient().get_metric_history(mlflow.last_active_run().info.run_id, "mean_local_loss")
    evaluated = [r for r in run.records if "mean_local_loss" in r]
    assert [m.step for m in logged] == [r["round"] for r in evaluated] == [0, 1, 2]
    assert [m.value for m in logged] == pytest.approx([r["mean_local_loss"] for r in evaluated])


def test_compare_tune_and_report_from_python(tmp_path):
    config = {**TINY, "out_dir": str(tmp_path), "data": {"train_per_client": 8, "val_per_client": 4,
                                                         "test_per_client": 4}}
    tuning = mira.tune({**config, "name": "tune"}, ["mira", "fedit"], trials=2)
    assert set(tuning.best_params) == {"mira", "fedit"} and len(tuning.studies["mira"].trials) == 2
    assert set(tuning.best_params["mira"]["mira"]) == {"eta", "lam"}
    comparison = mira.compare({**config, "name": "cmp"}, ["mira", "fedit"], seeds=[0], params=tuning.best_params)
    assert comparison.path == tmp_path / "cmp" and (comparison.path / "results.md").is_file()
    per_client = comparison.per_client()
    assert list(per_client.columns) == ["mira", "fedit"] and len(per_client) == len(comparison.clients) == 9
    final = comparison.final().set_index("variant")
    assert per_client.mean().to_dict() == pytest.approx(final["mean_local_loss"].to_dict())
    assert {p.name for p in comparison.plot(tmp_path)} >= {"mean_local_loss.png", "final_local_loss.png"}
    again = mira.report(comparison.path)
    assert again.finals.equals(comparison.finals)


def test_validation_only_evaluates_no_test_set_and_a_shared_round_zero_is_taken():
    clients = {"adder": CLIENTS["adder"], "multiplier": CLIENTS["multiplier"] | {"val": _records("*", 17)[15:]}}
    config = TINY | {"eval": TINY["eval"] | {"test_sets": False}}
    first = mira.run(config, clients=clients)
    assert all("local_loss" not in r and "rouge_l" not in r and "val_loss" in r for r in first.records)
    assert "selected" not in first.records[-1]

    shared = mira.callbacks.SharedInitialEvaluation()
    second = mira.run(config, clients=clients, callbacks=[shared])
    assert shared.record["val_loss"] == first.records[0]["val_loss"]
    given = {"val_loss": {"adder": 9.0, "multiplier": 8.0}, "mean_val_loss": 8.5}
    third = mira.run(config, clients=clients, callbacks=[mira.callbacks.SharedInitialEvaluation(given)])
    assert third.records[0] == {"round": 0, "sampled": []} | given | {"mean_selected_val_loss": 8.5}
    assert third.records[-1]["val_loss"] == second.records[-1]["val_loss"]
