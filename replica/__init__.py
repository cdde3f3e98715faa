"""replica: one LoRA agent per expert, trained from their demonstrations and feedback."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`replica.load_replica` without importing torch at `import replica` (the CLI starts fast)."""
    if name == "load_replica":
        from replica.agents.replica import load_replica

        return load_replica
    raise AttributeError(f"module 'replica' has no attribute {name!r}")
