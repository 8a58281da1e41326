"""The FedPTuning algorithm (described, and its settings declared, in this package's __init__)."""

from __future__ import annotations

from ..fedit import FedIT


class FedPTuning(FedIT):
    name = "fedptuning"

    @classmethod
    def peft_config(cls, cfg):
        """P-tuning's virtual tokens and their prompt encoder (PEFT's PromptEncoderConfig)."""
        from peft import PromptEncoderConfig
        return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.settings.tokens,
                                   encoder_hidden_size=cfg.settings.hidden)
