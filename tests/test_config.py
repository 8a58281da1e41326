import pytest

from mira.config import ConfigError, load_config, parse_override


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\n[train]\nlr = 1\n[federation]\nalgorithm = "fedit"\n')
    cfg = load_config(path, ["federation.rounds=5", "model.target_modules=['q_proj']", "name=x"])
    assert (cfg.seed, cfg.train.lr, cfg.federation.algorithm) == (3, 1.0, "fedit")
    assert cfg.federation.rounds == 5 and cfg.model.target_modules == ["q_proj"] and cfg.name == "x"
    assert isinstance(cfg.train.lr, float)


def test_override_parsing():
    assert parse_override("a.b=1e-3") == {"a": {"b": 0.001}}
    assert parse_override("name=hello") == {"name": "hello"}


@pytest.mark.parametrize("overrides,match", [
    (["train.lrr=1"], "unknown key 'train.lrr'"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["train.lr=-1"], "train.lr: must be > 0"),
    (["train.local_steps=1.5"], "expected int"),
    (["federation.algorithm=fedavg"], "expected one of"),
    (["federation.sample_fraction=1.5"], "federation.sample_fraction: must be <= 1.0, got 1.5"),
    (["federation.sample_fraction=0"], "federation.sample_fraction: must be > 0"),
    (["model.autocast=fp16"], "model.autocast: expected one of .'bfloat16', 'none'., got 'fp16'"),
    (["train=1"], "'train' must be a table"),
    (["seed=true"], "seed: expected int, got True"),
    (["mira.graph.kind=file"], "mira.graph: path: required"),
    (["train.lr"], "expected key=value"),
    (["name='a/b'"], "plain directory name"),
])
def test_bad_values_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(tmp_path / "bad.toml")


def test_shipped_example_config_loads():
    from pathlib import Path
    cfg = load_config(Path(__file__).parents[1] / "configs" / "example.toml")
    assert cfg.mira.graph.kind == "ground_truth" and cfg.federation.algorithm == "mira"


def test_assignment_is_validated_and_every_algorithm_is_exported():
    import pydantic
    import pytest

    import mira
    from mira.algorithms import ALGORITHMS

    cfg = load_config(None, [])
    with pytest.raises(pydantic.ValidationError, match="greater than 0"):
        cfg.train.lr = -1
    with pytest.raises(pydantic.ValidationError):
        cfg.federation.sample_fraction = 2.0
    cfg.train.lr = 1  # an int for a float is fine
    exported = [getattr(mira, name) for name in mira.__all__]
    assert all(any(cls is e for e in exported) for cls in [*ALGORITHMS.values(), mira.Algorithm])


def test_keys_that_moved_to_an_algorithms_table_are_read_there_with_a_note(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text('[federation]\nlam = 0.3\nmu = 0.2\nkseed_lr = 1e-4\n[model]\np_tuning_tokens = 7\n'
                   '[graph]\nkind = "random"\ndensity = 0.25\n')
    with pytest.warns(FutureWarning, match="'federation.lam' is now 'mira.lam'"):
        cfg = load_config(old, ["federation.eta=0.25"])
    assert (cfg.mira.lam, cfg.mira.eta, cfg.fedprox.mu, cfg.ditto.mu, cfg.fedkseed.lr, cfg.fedptuning.tokens,
            cfg.mira.graph.kind, cfg.mira.graph.density) == (0.3, 0.25, 0.2, 0.2, 1e-4, 7, "random", 0.25)
    assert load_config(old, ["mira.lam=0.5"]).mira.lam == 0.5  # an override wins, by either key
    assert load_config(None, ["mira.lam=0.5", "federation.lam=0.7"]).mira.lam == 0.7
    # a best_params.toml written before the move, applied to a config of today (benchmarks/privacy.py)
    from mira.comparison import variant_config
    assert variant_config(load_config(None), "mira", 0, tmp_path, {"federation": {"eta": 0.1}}).mira.eta == 0.1
    old.write_text("[federation]\nlam = 0.3\n[mira]\nlam = 0.5\n")
    with pytest.raises(ConfigError, match=r"federation.lam \(now mira.lam\) and mira.lam"):
        load_config(old)


def test_every_committed_record_config_loads():
    """Records made before the algorithms owned their settings load with the same values."""
    import warnings
    from pathlib import Path

    records = sorted((Path(__file__).parents[1] / "benchmarks" / "results").rglob("config.toml"))
    assert len(records) > 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lams = {load_config(path).mira.lam for path in records}
    assert 0.4004970397914422 in lams  # the tuned MIRA λ of the NI verdict's category graph
