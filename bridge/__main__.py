"""Command line: ``serve``, ``send``, ``check-config``, ``asyncapi``; nothing else lives here."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from bridge.errors import ConfigError
from bridge.sender import send_command
from bridge.settings import load_settings, resolve, unknown_environment

app = typer.Typer(
    name="alm-bridge",
    help="Receive Adobe Learning Manager webhooks and republish every event to Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML file with receivers and settings (same as BRIDGE_CONFIG_FILE).",
        dir_okay=False,
    ),
]


def _warn_unknown_environment() -> None:
    for name in unknown_environment():
        typer.echo(f"alm-bridge: warning: {name} is not a setting and is ignored", err=True)


def _fail(exc: ConfigError) -> typer.Exit:
    typer.echo("alm-bridge: invalid configuration:", err=True)
    for problem in exc.problems:
        typer.echo(f"  - {problem}", err=True)
    return typer.Exit(code=2)


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the bridge until SIGTERM or SIGINT."""
    from bridge.app import serve as run_server
    from bridge.logs import configure
    from bridge.publisher import KafkaStartError

    _warn_unknown_environment()
    try:
        settings = load_settings(config)
        resolve(settings)
    except ConfigError as exc:
        raise _fail(exc) from None
    configure(settings.log_level, settings.log_format)
    try:
        code = _run(run_server(settings))
    except KafkaStartError as exc:
        typer.echo(f"alm-bridge: cannot connect to Kafka: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    raise typer.Exit(code=code)


def _run(coro: object) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration and print it with secrets masked."""
    _warn_unknown_environment()
    try:
        settings = load_settings(config)
        receivers = resolve(settings)
    except ConfigError as exc:
        raise _fail(exc) from None
    effective = settings.masked()
    for spec in effective["receivers"]:
        resolved = next(r for r in receivers if r.name == spec["name"])
        spec["url_path"] = f"/webhooks/{resolved.name}"
    sys.stdout.write(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode() + "\n")


app.command("send")(send_command)


@app.command("asyncapi")
def asyncapi(
    config: ConfigOption = None,
    output_format: Annotated[
        str, typer.Option("--format", help="yaml, json or markdown (a page for people).")
    ] = "yaml",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0 document of the records published with this configuration."""
    from bridge.asyncapi import build_document, render, sample_bodies

    _warn_unknown_environment()
    try:
        document = build_document(load_settings(config), samples=sample_bodies())
    except ConfigError as exc:
        raise _fail(exc) from None
    try:
        text = render(document, output_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
