"""Library chatter off by default, all of it back with `-v`.

A run's console is for what replica has to say (counts, progress, where results went). Left on,
transformers' FutureWarnings, `datasets` map bars ("Tokenizing train dataset...") and the
Trainer's raw log dicts were about half of the demo's output. `replica -v ...` turns them all
back on. The CLI decides once at start-up (`set_verbose`); the choice is kept in the environment
(`REPLICA_VERBOSE`), so processes started by `accelerate launch` make the same one, and the
stages that load the libraries anyway apply it to them (`apply_to_libraries`): importing them
just to switch them off would cost every command seconds.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

ENV = "REPLICA_VERBOSE"
LIBRARIES = ("transformers", "datasets", "trl", "peft", "accelerate", "huggingface_hub", "torch")


def is_verbose() -> bool:
    """True when `-v` (or `REPLICA_VERBOSE=1`) asked for library output."""
    return os.environ.get(ENV) == "1"


def set_verbose(verbose: bool) -> None:
    """Record the choice for this process and its children and apply what is cheap to apply."""
    os.environ[ENV] = "1" if verbose else "0"
    _apply_warnings_and_loggers()
    if "datasets" in sys.modules or "transformers" in sys.modules:
        apply_to_libraries()


def apply_to_libraries() -> None:
    """Silence (or restore) `datasets` progress bars and transformers' and datasets' logs, as the
    CLI chose; a program that imports replica as a library and chose nothing keeps its own settings."""
    if ENV not in os.environ:
        return
    import datasets
    import transformers

    _apply_warnings_and_loggers()
    level = _level()
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    (datasets.enable_progress_bars if is_verbose() else datasets.disable_progress_bars)()
    (
        transformers.utils.logging.enable_progress_bar
        if is_verbose()
        else transformers.utils.logging.disable_progress_bar
    )()


def _level() -> int:
    return logging.WARNING if is_verbose() else logging.ERROR


def _apply_warnings_and_loggers() -> None:
    # replica itself speaks through logging, never `warnings`: every warning is a library's.
    warnings.simplefilter("default" if is_verbose() else "ignore")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(_level())
