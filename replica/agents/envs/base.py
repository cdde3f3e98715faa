"""The tool-environment protocol: a JSON state, tools over it, reset from a task's initial state.

An environment is a class registered by name. Configs refer to environments by that name only;
other installed packages add theirs through the `replica.environments` entry-point group, so no
YAML ever names arbitrary code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from replica.errors import UserError

ENTRY_POINT_GROUP = "replica.environments"


@dataclass(frozen=True)
class Tool:
    """One callable tool: its OpenAI function schema and the method that runs it on the state."""

    name: str
    schema: dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}
    run: Callable[..., Any]


class ToolError(Exception):
    """Raised inside a tool for an expected failure (unknown id, not allowed); becomes a tool message."""


class Environment:
    """Base class: subclasses set `name`, define `default_state()` and tool methods, and list them
    in `tool_schemas()`.

    State is plain JSON (dicts, lists, str, int, float, bool, None) so it can be hashed, saved and
    compared after normalization.
    """

    name: ClassVar[str] = ""

    def __init__(self, initial_state: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = {}
        self.reset(initial_state)

    # -- to override -------------------------------------------------------------------------

    def default_state(self) -> dict[str, Any]:
        return {}

    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI function schemas; each `function.name` must be a method of this class."""
        return []

    # -- shared behaviour --------------------------------------------------------------------

    def reset(self, initial_state: dict[str, Any] | None = None) -> None:
        """Start over from a task's initial state (deep-copied: episodes never share state)."""
        state = initial_state if initial_state is not None else self.default_state()
        self.state = copy.deepcopy(json.loads(json.dumps(state)))

    def tools(self) -> dict[str, Tool]:
        return {
            schema["function"]["name"]: Tool(
                name=schema["function"]["name"], schema=schema, run=getattr(self, schema["function"]["name"])
            )
            for schema in self.tool_schemas()
        }

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state, safe to keep after more steps run."""
        return copy.deepcopy(self.state)


_REGISTRY: dict[str, type[Environment]] = {}


def register(cls: type[Environment]) -> type[Environment]:
    """Class decorator: make an environment available by its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty `name`")
    _REGISTRY[cls.name] = cls
    return cls


def get_environment(name: str) -> type[Environment]:
    """Look an environment up by name: built-ins first, then installed entry points."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            cls = entry.load()
            if not (isinstance(cls, type) and issubclass(cls, Environment)):
                raise UserError(f"entry point {ENTRY_POINT_GROUP}:{name} is not an Environment subclass")
            _REGISTRY[name] = cls
            return cls
    known = sorted(set(_REGISTRY) | {e.name for e in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    raise UserError(f"unknown environment {name!r}; known: {', '.join(known) or 'none'}")


def available_environments() -> list[str]:
    _load_builtins()
    return sorted(set(_REGISTRY) | {e.name for e in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def _load_builtins() -> None:
    """Import the environment modules shipped with replica (each registers itself)."""
    import importlib
    import pkgutil

    import replica.agents.envs as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"{package.__name__}.{module.name}")
