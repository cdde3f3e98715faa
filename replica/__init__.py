"""replica: one LoRA agent per expert, trained from their demonstrations and feedback."""

__version__ = "0.1.0"
