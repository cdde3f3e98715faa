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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log more, and show the libraries' warnings, bars and logs."
    ),
) -> None:
    _state["debug"] = debug
    from replica.verbosity import set_verbose

    set_verbose(verbose or debug)  # library warnings, map bars and trainer dicts only with -v
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
    from replica.bases.tiny import ensure_base

    print(ensure_base(build_config, rebuild=rebuild))


# --------------------------------------------------------------------------- data


data_app = typer.Typer(help="Validate and prepare demonstrations and feedback.", no_args_is_help=True)
app.add_typer(data_app, name="data")
StrictOpt = typer.Option(False, "--strict", help="Stop at the first bad record instead of quarantining it.")


@data_app.command("validate")
def data_validate(
    paths: list[Path] = typer.Argument(
        ..., help="Input files (JSONL, JSON, parquet, arrow, save_to_disk dirs)."
    ),
    strict: bool = StrictOpt,
    contributor: str | None = typer.Option(
        None, "--contributor", help="Attribute rows of foreign formats (OpenAI, ShareGPT, ...) to this id."
    ),
) -> None:
    """Check input files: every bad record with file, line, JSON path and reason; exit 1 if any."""
    from replica.data.validate import validate_paths

    report = validate_paths(paths, strict=strict, contributor=contributor)
    for problem in report.problems:
        print(problem)
    for path, fmt in report.formats.items():
        console.print(f"{path}: format {fmt}", soft_wrap=True)
    if not report.contributors_checked:
        console.print("contributor ids not checked: none of these files holds contributor records")
    console.print(report.counts.summary())
    from replica.data.rejections import rejection_lines

    for line in rejection_lines(report.rejections, "each one listed above"):
        console.print(line, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(config: Path = ConfigArg, set_: list[str] = SetOpt, strict: bool = StrictOpt) -> None:
    """Validate, convert, dedupe, filter by consent, pair feedback and split by task into prepared/."""
    from replica.bases import provide_base
    from replica.config import load_config
    from replica.data.prepare import prepare
    from replica.model import load_tokenizer

    run_config = load_config(config, set_)
    model = run_config.model
    tokenizer = load_tokenizer(provide_base(model), model.revision, model.chat_template)
    result = prepare(run_config, tokenizer, strict=strict)
    console.print(result.summary(), soft_wrap=True, markup=False)
    print(result.prepared_dir)
    if not result.accepted_records:  # an empty prepared set is not a success a script should go on from
        console.print("error: no demonstration or feedback record was accepted", style="red")
        raise typer.Exit(1)


# --------------------------------------------------------------------------- train


@app.command("train")
def train(
    config: Path = ConfigArg,
    contributor: list[str] = typer.Option(None, "--contributor", help="Only this contributor (repeatable)."),
    stage: str = typer.Option("all", "--stage", help="sft, dpo or all (sft then dpo)."),
    set_: list[str] = SetOpt,
    shard: str = typer.Option(None, "--shard", help="K/N: train a deterministic 1/N of the contributors."),
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="Replace published or checkpointed stages made with other settings than the config's "
        "(without it they are an error that lists what changed).",
    ),
) -> None:
    """Train each contributor's replica: LoRA SFT, then DPO from it. Rerun to resume after a crash."""
    from replica.config import load_config
    from replica.train.pipeline import run_training
    from replica.train.shard import parse_shard

    summary = run_training(
        load_config(config, set_), contributor or None, stage, parse_shard(shard) if shard else None, retrain
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


@app.command("status")
def status_cmd(run_dir: Path = typer.Argument(..., help="A run directory, e.g. runs/demo.")) -> None:
    """A run at a glance: prepared data, each contributor's stages, the last eval, where reports are."""
    from replica.status import print_status

    print_status(run_dir, console)


# --------------------------------------------------------------------------- eval


@app.command("eval")
def eval_cmd(
    config: Path = ConfigArg,
    contributor: str = typer.Option(None, "--contributor", help="Only this contributor (default: all)."),
    stages: str = typer.Option(
        None, "--stages", help="Comma-separated subset of base,sft,dpo (default: eval.stages)."
    ),
    set_: list[str] = SetOpt,
) -> None:
    """Evaluate every replica on its contributor's held-out tasks; writes <run_dir>/eval/ and prints the leaderboard."""
    from replica.config import load_config
    from replica.eval.run import run_eval

    run_eval(
        load_config(config, set_),
        contributor,
        [s.strip() for s in stages.split(",") if s.strip()] if stages else None,
    )


# --------------------------------------------------------------------------- demo


@app.command("demo")
def demo_cmd(
    config: Path = typer.Argument(Path("configs/demo.yaml"), help="Demo config (default configs/demo.yaml)."),
    rebuild_base: bool = typer.Option(False, "--rebuild-base", help="Retrain the base model first."),
    set_: list[str] = SetOpt,
) -> None:
    """The embedded demo: base → prepare → SFT + DPO per contributor → eval → leaderboard and report."""
    from replica.demo import run_demo

    run_demo(config, rebuild_base=rebuild_base, overrides=set_, console=console)


# --------------------------------------------------------------------------- agents: chat, run, serve, keys, usage

RunDirOpt = typer.Option(
    Path("runs/demo"), "--run", help="Run directory holding replicas/ (default runs/demo)."
)
StageOpt = typer.Option(None, "--stage", help="sft or dpo (default: the final stage trained).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
ServeConfigOpt = typer.Option(None, "--config", help="Serve settings YAML (default configs/serve.yaml).")


@app.command("chat")
def chat_cmd(
    contributor: str = typer.Argument(..., help="Contributor id of the replica."),
    run: Path = RunDirOpt,
    stage: str | None = StageOpt,
    env: str | None = typer.Option(None, "--env", help="Attach a tool environment, e.g. support_desk."),
    device: str = DeviceOpt,
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest reply, in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
) -> None:
    """Chat with a replica in the terminal (streamed; Ctrl-D or Ctrl-C to leave)."""
    from replica.agents.chat import chat

    chat(run, contributor, stage, env, device, max_tokens, temperature)


@app.command("run")
def run_cmd(
    contributor: str = typer.Argument(..., help="Contributor id of the replica."),
    instruction: str | None = typer.Argument(None, help="The task, as the user would say it."),
    env: str | None = typer.Option(None, "--env", help="Tool environment, e.g. support_desk."),
    task: str | None = typer.Option(
        None, "--task", help="Run one of the contributor's held-out tasks by id."
    ),
    run: Path = RunDirOpt,
    stage: str | None = StageOpt,
    device: str = DeviceOpt,
    max_turns: int = typer.Option(8, "--max-turns", help="Step limit of the episode."),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Longest assistant turn, in tokens."),
    state: Path | None = typer.Option(None, "--state", help="JSON file: the environment's initial state."),
) -> None:
    """Run one agent episode and print each step and the end state."""
    from replica.agents.chat import run_once

    run_once(run, contributor, instruction, env, stage, device, max_turns, max_tokens, state, task)


@app.command("serve")
def serve_cmd(
    run: Path = RunDirOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    config: Path | None = ServeConfigOpt,
    device: str = DeviceOpt,
) -> None:
    """Serve every replica of a run over an OpenAI-compatible API (keys required)."""
    from replica.agents.server import serve

    serve(run, host, port, config, device)


keys_app = typer.Typer(help="API keys of the server (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
KeysRunOpt = typer.Option(None, "--run", help="Run directory (keys live in <run>/serve/keys.sqlite).")
KeysDbOpt = typer.Option(None, "--db", help="Key database path (overrides --run).")


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="Consumer name."),
    run: Path | None = KeysRunOpt,
    db: Path | None = KeysDbOpt,
) -> None:
    """Create an API key for a consumer and print it (once)."""
    from replica.agents.keys import manage_keys

    print(manage_keys("create", name, run, db))


@keys_app.command("revoke")
def keys_revoke(
    name: str = typer.Option(..., "--name"), run: Path | None = KeysRunOpt, db: Path | None = KeysDbOpt
) -> None:
    """Revoke a consumer's key (refused from the next request on)."""
    from replica.agents.keys import manage_keys

    print(manage_keys("revoke", name, run, db))


@keys_app.command("list")
def keys_list(run: Path | None = KeysRunOpt, db: Path | None = KeysDbOpt) -> None:
    """List key names and dates (keys themselves are never stored)."""
    from replica.agents.keys import manage_keys

    print(manage_keys("list", None, run, db))


@app.command("usage")
def usage_cmd(
    run: Path | None = typer.Option(None, "--run", help="Served run (ledger at <run>/serve/usage.sqlite)."),
    db: Path | None = typer.Option(None, "--db", help="Usage ledger path (overrides --run)."),
    since: str | None = typer.Option(None, "--since", help="Only requests from this date/time (ISO)."),
    contributor: str | None = typer.Option(None, "--contributor", help="Only this contributor's rows."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    config: Path | None = ServeConfigOpt,
) -> None:
    """Usage per contributor and per consumer, with the contributor's share."""
    from replica.agents.usage import report_usage

    print(report_usage(run, config, db, since, contributor, fmt), end="")


# --------------------------------------------------------------------------- studio

studio_app = typer.Typer(
    help="The contributors' web app: record, review, consent, earnings (see docs/studio.md).",
    invoke_without_command=True,
)
app.add_typer(studio_app, name="studio")
StudioConfigOpt = typer.Option(None, "--config", help="Run config YAML (default <run>/config.yaml).")
StudioServeOpt = typer.Option(None, "--serve-config", help="Serve settings YAML (ledger, consent file).")


@studio_app.callback()
def studio_cmd(
    ctx: typer.Context,
    run: Path = RunDirOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8100, "--port"),
    config: Path | None = StudioConfigOpt,
    serve_config: Path | None = StudioServeOpt,
    device: str = DeviceOpt,
) -> None:
    """Serve the studio of a run until interrupted (sign in with a token from `studio token create`)."""
    if ctx.invoked_subcommand is None:
        from replica.studio.app import run_studio

        run_studio(run, host, port, config, serve_config, device)


token_app = typer.Typer(help="Sign-in tokens of the studio (stored hashed).", no_args_is_help=True)
studio_app.add_typer(token_app, name="token")
TokenContributorOpt = typer.Option(..., "--contributor", help="Contributor id.")


def _token(action: str, run: Path, config: Path | None, contributor: str | None) -> None:
    from replica.studio.auth import manage_tokens
    from replica.studio.site import load_site

    print(manage_tokens(load_site(run, config), action, contributor))


@token_app.command("create")
def token_create(
    contributor: str = TokenContributorOpt, run: Path = RunDirOpt, config: Path | None = StudioConfigOpt
) -> None:
    """Create a contributor's sign-in token and print it (once)."""
    _token("create", run, config, contributor)


@token_app.command("revoke")
def token_revoke(
    contributor: str = TokenContributorOpt, run: Path = RunDirOpt, config: Path | None = StudioConfigOpt
) -> None:
    """Revoke a contributor's sign-in token (refused from the next request on)."""
    _token("revoke", run, config, contributor)


@token_app.command("list")
def token_list(run: Path = RunDirOpt, config: Path | None = StudioConfigOpt) -> None:
    """List whose tokens exist and when they were made (tokens themselves are never stored)."""
    _token("list", run, config, None)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes become one line on stderr and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)  # without standalone mode, click returns typer.Exit's code instead of exiting
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
