"""Kosmos-2 + LoRA policy, trainer and inference runtime (arrives with the trainer issue)."""
