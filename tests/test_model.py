import os
import subprocess
import sys

import pytest

from mira.config import ModelConfig
from mira.model import load_base_model, tiny_model


def test_local_directory_loads(tmp_path):
    model, tok = tiny_model()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_base_model(ModelConfig(name=str(tmp_path / "m")))
    assert loaded.config.hidden_size == model.config.hidden_size
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded_tok("ab")["input_ids"] == tok("ab")["input_ids"]


def test_missing_local_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_base_model(ModelConfig(name=str(tmp_path / "nothing")))
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        load_base_model(ModelConfig(name=str(tmp_path / "x.gguf")))


def test_hub_id_offline_gives_clear_error(tmp_path):
    # A fresh process, so the Hub client reads HF_HUB_OFFLINE at import as it does for users.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "mira.cli", "run", "--no-progress",
                           "--set", "model.name='HuggingFaceTB/SmolLM2-135M-Instruct'",
                           "--set", f"out_dir='{tmp_path}'"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot load 'HuggingFaceTB/SmolLM2-135M-Instruct'" in proc.stderr
    assert "Traceback" not in proc.stderr
