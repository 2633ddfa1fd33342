"""Training (Ray Train + TRL): label-only SFT (step 0) and DPO (step 6) as two specs of one
trainer skeleton (trainer.py), implicit reward margins.

Heavy libraries (torch, transformers, TRL, Ray) are imported inside the functions, so importing
this package is cheap.
"""

from anchor_service.training.dpo import train_dpo
from anchor_service.training.margins import implicit_reward_margins
from anchor_service.training.ray_trainer import TrainingError
from anchor_service.training.sft import train_sft

__all__ = ["TrainingError", "implicit_reward_margins", "train_dpo", "train_sft"]
