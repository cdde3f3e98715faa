"""replica.agents: replicas as agents (load, chat, run), the agent loop, environments, serving.

`load_replica` is the entry point; it is imported lazily so that `import replica.agents` stays light.
"""


def __getattr__(name: str):
    if name in ("load_replica", "Replica"):
        from replica.agents import replica

        return getattr(replica, name)
    raise AttributeError(f"module 'replica.agents' has no attribute {name!r}")
