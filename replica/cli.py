"""The `replica` command. Thin: each subcommand parses its arguments and calls one stage function.

User mistakes (UserError) exit with code 2 and one readable line; `--debug` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from replica.errors import UserError

app = typer.Typer(
    help="replica: one LoRA agent per expert, trained from their demonstrations and feedback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}

ConfigArg = typer.Argument(..., exists=False, help="Run config YAML (see configs/).")
SetOpt = typer.Option(None, "--set", help="Override a config key: --set sft.learning_rate=2e-4 (repeatable).")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
    logging.getLogger("replica").setLevel(logging.DEBUG if debug else logging.INFO)


# --------------------------------------------------------------------------- config


config_app = typer.Typer(help="Inspect run configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: Path = ConfigArg, set_: list[str] = SetOpt) -> None:
    """Validate a config and print it fully resolved (defaults, extends and --set applied)."""
    from replica.config import dump_config, load_config

    print(dump_config(load_config(config, set_)), end="")


# --------------------------------------------------------------------------- base


base_app = typer.Typer(help="The tiny offline base model.", no_args_is_help=True)
app.add_typer(base_app, name="base")


@base_app.command("build")
def base_build(
    build_config: Path = typer.Argument(..., help="Base-build YAML, e.g. configs/demo_base.yaml."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build even if a cached base exists."),
) -> None:
    """Train the tokenizer and the tiny base model locally (cached by config hash)."""
    from replica.train.base import ensure_base

    print(ensure_base(build_config, rebuild=rebuild))


# --------------------------------------------------------------------------- train


@app.command("train")
def train(
    config: Path = ConfigArg,
    contributor: list[str] = typer.Option(None, "--contributor", help="Only this contributor (repeatable)."),
    stage: str = typer.Option("all", "--stage", help="sft, dpo or all (sft then dpo)."),
    set_: list[str] = SetOpt,
    shard: str = typer.Option(None, "--shard", help="K/N: train a deterministic 1/N of the contributors."),
) -> None:
    """Train each contributor's replica: LoRA SFT, then DPO from it. Rerun to resume after a crash."""
    from replica.config import load_config
    from replica.train.pipeline import run_training
    from replica.train.shard import parse_shard

    summary = run_training(
        load_config(config, set_), contributor or None, stage, parse_shard(shard) if shard else None
    )
    from replica.train.distributed import is_main_process

    if is_main_process():
        for item in summary.outcomes:
            console.print(f"{item.contributor:<20} {item.stage:<4} {item.status:<18} {item.detail}")
        console.print(f"run: {summary.run_dir}  registry: {summary.registry}")


@app.command("list")
def list_(run_dir: Path = typer.Argument(..., help="A run directory, e.g. runs/demo.")) -> None:
    """List every replica of a run (registry rebuilt from the replica.json files)."""
    from replica.train.registry import format_table, list_replicas

    if not (run_dir / "replicas").is_dir():
        raise UserError(f"{run_dir}: no replicas/ directory (is this a run directory? run `replica train`)")
    print(format_table(list_replicas(run_dir)), end="")


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes become one line on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as err:
        _fail(err)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except Exception as err:  # click's own usage errors carry their exit code
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(2)
        raise


def _fail(err: Exception) -> None:
    if _state["debug"]:
        raise err
    from rich.text import Text

    console.print(Text.assemble(("error: ", "red"), str(err)), soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
