"""FFA-LoRA (Sun et al., 2024): the A matrices stay frozen at their (shared) initialisation and only B
is trained and averaged, so the average of the B's is the exact average of the updates B·A."""

from __future__ import annotations

from .base import LocalPlan
from .fedit import FedIT


class FFALoRA(FedIT):
    name = "ffa_lora"
    plan = LocalPlan(freeze_a=True)
