"""The third hostile pass (issue #35): each test here failed on the code before its fix."""

import json

import pytest
from safetensors.torch import load_file, save_file

from mira.checkpoint import CHECKPOINT, _digest, load_checkpoint
from mira.simulation import run


def test_the_checkpoint_digest_covers_the_round_and_a_missing_digest_is_an_error(tiny_config):
    cfg = tiny_config("name=digest", "federation.rounds=2")
    run(cfg, progress=False)
    path = cfg.run_dir / CHECKPOINT
    good = path.read_bytes()
    assert b'\\"round\\": 2' in good
    path.write_bytes(good.replace(b'\\"round\\": 2', b'\\"round\\": 3'))  # one flipped bit: 2 -> 3
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(cfg.run_dir)

    path.write_bytes(good)
    tensors = load_file(path)
    meta = json.loads(json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]["mira"])
    del meta["digest"]
    tensors["thetas"] += 1.0
    save_file(tensors, path, metadata={"mira": json.dumps(meta)})
    with pytest.raises(ValueError, match="carries no digest"):
        load_checkpoint(cfg.run_dir)
    # a checkpoint of the earlier format (its digest covers the tensors only) claiming a later round
    legacy = {k: v for k, v in meta.items() if k != "format"} | {"round": 3}
    tensors["thetas"] -= 1.0
    save_file(tensors, path, metadata={"mira": json.dumps(legacy | {"digest": _digest(tensors, legacy)})})
    with pytest.raises(ValueError, match="checkpoint is of round 3, but metrics.jsonl records rounds up to 2"):
        run(cfg.model_copy(update={"federation": cfg.federation.model_copy(update={"rounds": 4})}), progress=False,
            resume=True)
    path.write_bytes(good)
    assert load_checkpoint(cfg.run_dir).round == 2


def test_adapter_files_are_byte_reproducible(tmp_path):
    import torch

    from mira.config import ModelConfig
    from mira.lora import AdapterSlot, load_adapter, save_adapter
    from mira.model import attach_adapter, lora_config, tiny_model

    slot = AdapterSlot(attach_adapter(tiny_model()[0], lora_config(ModelConfig(name="tiny-random")), seed=0))
    theta = torch.randn(slot.layout.numel)
    meta = {"client": "ünïcode-client", "family": "f", "round": "3", "algorithm": "mira", "seed": "0"}
    files = set()
    for i in range(12):
        save_adapter(tmp_path / f"{i}.safetensors", theta, slot.layout, meta)
        files.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(files) == 1
    assert torch.equal(load_adapter(tmp_path / "0.safetensors", slot.layout), theta)


def test_a_huge_synthetic_request_is_refused_at_once(tiny_config):
    import time

    from mira.data import DataError, load_clients

    cfg = tiny_config("data.val_per_client=100000000")
    begin = time.perf_counter()
    with pytest.raises(DataError, match="asks the synthetic suite for 100000024 examples a task; at most 100000"):
        load_clients(cfg.data, cfg.seed)
    assert time.perf_counter() - begin < 5


TUNE = ["model.name=tiny-random", "data.train_per_client=12", "data.test_per_client=6", "data.val_per_client=6",
        "train.local_steps=1", "train.batch_size=4", "federation.rounds=1", "eval.eval_every=1",
        "eval.generate_per_client=0", "device=cpu"]


def test_a_second_tune_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    from mira.config import ConfigError, load_config
    from mira.tuning import LOCK, tune

    cfg = load_config(None, [*TUNE, f"out_dir='{tmp_path}'", "name=study"])
    cfg.run_dir.mkdir(parents=True)
    with open(cfg.run_dir / LOCK, "w") as held:  # another process holds the study
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match=r"another mira tune \(pid 4242\) is running"):
            tune(cfg, ["local"], trials=1, progress=False)
    assert not (cfg.run_dir / "study.db").exists()


def test_mira_search_space_respects_the_graph_bound_and_a_failed_trial_does_not_end_the_study(tmp_path, monkeypatch):
    import optuna

    import mira.tuning
    from mira.algorithms.mira import MiraSettings
    from mira.config import load_config
    from mira.data import load_clients
    from mira.graph import build_graph, max_degree
    from mira.tuning import tune

    cfg = load_config(None, [*TUNE, f"out_dir='{tmp_path}'", "mira.graph.normalize=false", "mira.graph.kind=uniform"])
    clients = load_clients(cfg.data, cfg.seed)
    degree = max_degree(build_graph(cfg.mira.graph, [c.family for c in clients], cfg.seed)[0])
    assert degree > 1  # an unnormalised uniform graph of 9 clients: degree 8
    study = optuna.create_study()
    for _ in range(20):
        trial = study.ask()
        step = MiraSettings.search_space(trial, cfg, clients)["mira"]["lam"]
        assert 0 <= step <= 1 / degree
        study.tell(trial, 1.0)

    objective, calls = mira.tuning._objective, []

    def first_fails(trial, *args, **kwargs):
        calls.append(trial.number)
        if trial.number == 0:
            raise FloatingPointError("diverged")
        return objective(trial, *args, **kwargs)
    monkeypatch.setattr(mira.tuning, "_objective", first_fails)
    out = tune(cfg.model_copy(update={"name": "fails"}), ["local"], trials=3, progress=False)
    assert calls == [0, 1, 2]
    assert "| local | 0 | FAIL |" in (out / "trials.md").read_text()
    assert "[local.train]" in (out / "best_params.toml").read_text()


def test_bad_tune_and_params_inputs_name_what_is_wrong(tmp_path, capsys):
    from mira.cli import main
    from mira.comparison import read_params
    from mira.config import ConfigError

    for seed in ("-1", str(2**63)):
        assert main(["tune", "-a", "local", "--trials", "1", "--seed", seed, "--no-progress",
                     "--set", f"out_dir='{tmp_path}'", "--set", "name=seeded", *(a for o in TUNE for a in ("--set", o))]) == 2
        assert f"--seed {seed}: must be >= 0 and < 2**63" in capsys.readouterr().err
    assert not (tmp_path / "seeded" / "study.db").exists()

    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "study.db").write_bytes(b"this is not sqlite" * 100)
    assert main(["tune", "-a", "local", "--trials", "1", "--no-progress", "--set", f"out_dir='{tmp_path}'",
                 "--set", "name=corrupt", *(a for o in TUNE for a in ("--set", o))]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'corrupt' / 'study.db'}: not a readable Optuna study database" in err and "\n" == err[-1]

    params = tmp_path / "params.toml"
    params.write_text("local = 5\n")
    with pytest.raises(ConfigError, match=r"--params .*params.toml: 'local' must be a table of settings"):
        read_params(params, ["local"])


def test_a_non_utf8_task_file_is_named(tmp_path):
    from mira.data import DataError
    from mira.data.loaders import load_ni_task

    path = tmp_path / "task1_latin1.json"
    path.write_bytes('{"Definition": "caf\u00e9", "Instances": []}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"task1_latin1.json: not UTF-8 text \(byte 19"):
        load_ni_task(path)


def test_extending_a_finished_run_without_checkpoint_is_refused_and_keeps_it(tiny_config, capsys):
    from mira.cli import main

    cfg = tiny_config("name=nockpt", "federation.rounds=1", "checkpoint_every=0")
    run(cfg, progress=False)
    adapters = {p.name: p.read_bytes() for p in (cfg.run_dir / "adapters").glob("*.safetensors")}
    metrics = (cfg.run_dir / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(cfg.run_dir), "--set", "federation.rounds=3", "--no-progress"]) == 2
    assert "finished without a checkpoint (checkpoint_every = 0), so it cannot be resumed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (cfg.run_dir / "adapters").glob("*.safetensors")} == adapters
    assert (cfg.run_dir / "metrics.jsonl").read_text() == metrics


def test_clip_to_median_bounds_a_scaled_reply_among_two_and_alone():
    """The median of two norms is their mean, so a x1e6 reply used to pass; now it is bounded by the
    smaller norm (two replies), by earlier rounds' accepted norms (a history kept across rounds and
    checkpoints), and cannot enter the history at its own length."""
    import torch

    from mira.algorithms.base import screen_replies

    def screen(updates, history):
        sent = {k: {"adapter": torch.zeros(4)} for k in updates}
        accepted, _ = screen_replies(sent, {k: {"adapter": u} for k, u in updates.items()}, clip_to_median=2.0,
                                     history=history)
        return {k: float(reply["adapter"].norm()) for k, reply in accepted.items()}

    honest = torch.tensor([1.0, 0.0, 0.0, 0.0])
    history: dict[str, list[float]] = {}
    norms = screen({0: honest, 1: honest * 1e6}, history)
    assert norms == {0: 1.0, 1: 2.0}
    for _ in range(3):
        screen({0: honest * 1.1}, history)
    alone = screen({5: honest * 3e38}, history)  # one attacker in a round of its own
    assert alone[5] <= 2.0 * 1.1 + 1e-6
    assert max(history["adapter"]) <= 2.2 + 1e-6


def test_the_norm_history_survives_a_resume(tiny_config):
    from mira.checkpoint import load_checkpoint

    cfg = tiny_config("name=clipped", "federation.rounds=2", "federation.clip_to_median=2")
    run(cfg, progress=False)
    history = load_checkpoint(cfg.run_dir).screening["adapter"]
    assert len(history) == 2 * 3  # two rounds of three sampled clients


def test_a_compare_rerun_with_other_settings_is_refused_or_restarted(tmp_path, capsys):
    from mira.cli import main

    base = ["compare", "-a", "local", "--no-progress", "--set", f"out_dir='{tmp_path}'", "--set", "name=mixed",
            *(a for o in TUNE[:-1] + ["federation.rounds=1"] for a in ("--set", o))]
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[local.train]\nlr = 0.01\n")
    bad.write_text("[local.train]\nlr = 0.5\n")
    assert main([*base, "--params", str(good)]) == 0
    first = (tmp_path / "mixed" / "local-s0" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main([*base, "--params", str(bad)]) == 2
    assert "started with other settings (train.lr differ)" in capsys.readouterr().err
    assert (tmp_path / "mixed" / "local-s0" / "metrics.jsonl").read_text() == first
    assert "lr = 0.01" in (tmp_path / "mixed" / "local-s0" / "config.toml").read_text()
    assert main([*base, "--params", str(bad), "--restart-changed"]) == 0
    assert "lr = 0.5" in (tmp_path / "mixed" / "local-s0" / "config.toml").read_text()
    assert (tmp_path / "mixed" / "local-s0" / "metrics.jsonl").read_text() != first
    assert json.loads((tmp_path / "mixed" / "comparison.json").read_text())["params"]["local"]["train"]["lr"] == 0.5


def test_compares_side_by_side_on_one_folder_keep_each_others_settings(tmp_path):
    """`mira compare -a local --params ...` and `-a fedit --params ...` on one folder (one after the other,
    as side by side): the record and the report keep both variants' settings."""
    from mira.cli import main

    base = ["compare", "--no-progress", "--set", f"out_dir='{tmp_path}'", "--set", "name=both",
            *(a for o in TUNE[:-1] + ["federation.rounds=1"] for a in ("--set", o))]
    params = tmp_path / "params.toml"
    params.write_text("[local.train]\nlr = 0.01\n[fedit.train]\nlr = 0.02\n")
    assert main([*base, "-a", "local", "--params", str(params)]) == 0
    assert main([*base, "-a", "fedit", "--params", str(params)]) == 0
    record = json.loads((tmp_path / "both" / "comparison.json").read_text())
    assert record["variants"] == ["fedit"] and record["params"] == {"fedit": {"train": {"lr": 0.02}},
                                                                    "local": {"train": {"lr": 0.01}}}
    report = (tmp_path / "both" / "results.md").read_text()
    assert "- fedit: train.lr = 0.02" in report and "- local: train.lr = 0.01" in report
