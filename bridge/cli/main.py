"""Command line: serve, send, tail, replay, diagnose, check-config, asyncapi; nothing else here."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from typer.core import TyperCommand, TyperGroup

from bridge import __version__
from bridge.config.config_problems import unknown_variable
from bridge.config.receivers import Receiver, resolve
from bridge.config.settings import (
    Settings,
    kafka_problems,
    load_settings,
    plaintext_secrets,
    unknown_environment,
)
from bridge.core.errors import ConfigError, KafkaStartError, KafkaTopicRefused, StartupError
from bridge.core.routing import DEFAULT_CANARY_TOPIC

T = TypeVar("T")


class _Commands(TyperGroup):
    """Loads ``send`` (the simulator, with aiohttp's client and rich) only when it is asked for.

    Click's pattern for lazily loaded subcommands: ``serve`` and ``check-config`` never
    import :mod:`bridge.cli.sender`.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted([*super().list_commands(ctx), "send"])

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name != "send":
            return super().get_command(ctx, cmd_name)
        from bridge.cli.sender.cli import typer_app

        return typer.main.get_command(typer_app())


# Settings whose value is a secret: never echoed back from a mistaken option.
_SECRET_FIELDS = frozenset({"hmac_secret", "basic_credentials", "kafka_sasl_password"})


def setting_for_option(option: str) -> str | None:
    """The setting an option such as ``--port`` or ``--bootstrap-servers`` means, if any."""
    field = option.lstrip("-").replace("-", "_").lower()
    for candidate in (field, f"kafka_{field}"):
        if candidate in Settings.model_fields and candidate != "config_file":
            return candidate
    return None


class _ReadsSettings(TyperCommand):
    """A command configured by ``BRIDGE_*`` variables: an option named like a setting
    (``serve --port 9000``) is answered with the variable to set, not only "No such option"."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = {opt for param in self.params for opt in (*param.opts, *param.secondary_opts)}
        for index, arg in enumerate(args):
            if arg == "--":
                break
            name, equals, value = arg.partition("=")
            if not name.startswith("--") or name in known:
                continue
            field = setting_for_option(name)
            if field is None:
                continue
            if not equals:
                following = args[index + 1] if index + 1 < len(args) else ""
                value = following if following and not following.startswith("-") else "…"
            if field in _SECRET_FIELDS:
                value = "…"
            typer.echo(
                f"alm-bridge {ctx.info_name}: {name} is not an option; settings are read "
                f"from BRIDGE_* variables (or the --config file): set "
                f"BRIDGE_{field.upper()}={value} (or {field}: {value} in the file)",
                err=True,
            )
            ctx.exit(2)
        return list(super().parse_args(ctx, args))


app = typer.Typer(
    name="alm-bridge",
    help="Receive Adobe Learning Manager webhooks and republish every event to Kafka.",
    cls=_Commands,
    no_args_is_help=True,
    add_completion=False,
    # Plain help: wraps at any terminal width instead of cutting columns off.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML file with receivers and settings (same as BRIDGE_CONFIG_FILE).",
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alm-bridge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Receive Adobe Learning Manager webhooks and republish every event to Kafka."""


def _check_config_file(config: Path | None) -> None:
    """A ``-c FILE`` that cannot be read is named as the option the user typed."""
    if config is None:
        return
    if not config.exists():
        raise ConfigError([f"--config {config}: no such file"])
    if not config.is_file():
        raise ConfigError([f"--config {config}: not a file"])
    if not os.access(config, os.R_OK):
        raise ConfigError([f"--config {config}: permission denied"])


# Well-known variables of other Kafka tools that the bridge does not read, and its own names.
FOREIGN_VARIABLES = {
    name: f"BRIDGE_{name}"
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
    )
}


def foreign_variables(environ: dict[str, str] | None = None) -> list[str]:
    """Warnings for well-known variables the bridge ignores, naming the one it reads."""
    env = dict(os.environ) if environ is None else environ
    return [
        f"{name} is ignored by the bridge; it reads {ours}"
        + (f" (set to {env[ours]!r})" if name != "KAFKA_SASL_PASSWORD" and ours in env else "")
        for name, ours in FOREIGN_VARIABLES.items()
        if name in env
    ]


def _warn_unknown_environment() -> None:
    known = [f"BRIDGE_{name.upper()}" for name in Settings.model_fields]
    for name in unknown_environment():
        typer.echo(f"alm-bridge: warning: {unknown_variable(name, known)}", err=True)
    for warning in foreign_variables():
        typer.echo(f"alm-bridge: warning: {warning}", err=True)


def _warn_plaintext_secrets(settings: Settings) -> None:
    for warning in plaintext_secrets(settings):
        typer.echo(f"alm-bridge: warning: {warning}", err=True)


def _fail(exc: ConfigError) -> typer.Exit:
    typer.echo("alm-bridge: invalid configuration:", err=True)
    for problem in exc.problems:
        typer.echo(f"  - {problem}", err=True)
    return typer.Exit(code=2)


def _load_and_resolve(config: Path | None) -> tuple[Settings, list[Receiver]]:
    """The settings and the receivers they describe, or exit 2 with one line a problem."""
    try:
        _check_config_file(config)
        settings = load_settings(config)
        _warn_plaintext_secrets(settings)
        return settings, resolve(settings)
    except ConfigError as exc:
        raise _fail(exc) from None


def _kafka_settings(config: Path | None) -> Settings:
    """The settings, checked for what reading Kafka needs (no receiver's secret is read),
    or exit 2 with one line a problem."""
    try:
        _check_config_file(config)
        settings = load_settings(config)
        settings.effective_receivers()
        problems = kafka_problems(settings)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        raise _fail(exc) from None
    return settings


@app.command(cls=_ReadsSettings)
def serve(config: ConfigOption = None) -> None:
    """Run the bridge until SIGTERM or SIGINT."""
    from bridge.service.app import serve as run_server
    from bridge.telemetry.logs import configure

    try:
        _warn_unknown_environment()
        settings, receivers = _load_and_resolve(config)
        repeated_lines = configure(
            settings.log_level, settings.log_format, config_defaults=Settings.defaults()
        )
        # The receivers checked above serve: their secret files are read once.
        code = _run(run_server(settings, receivers, repeated_lines=repeated_lines))
    except KafkaTopicRefused as exc:
        typer.echo(f"alm-bridge: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    except KafkaStartError as exc:
        typer.echo(f"alm-bridge: cannot connect to Kafka: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    except StartupError as exc:
        typer.echo(f"alm-bridge: {exc.detail}", err=True)
        raise typer.Exit(code=4) from None
    except KeyboardInterrupt:
        # Ctrl-C before the server handles signals itself: nothing was started yet.
        raise typer.Exit(code=130) from None
    raise typer.Exit(code=code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@app.command("check-config", cls=_ReadsSettings)
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration and print it with secrets masked."""
    _warn_unknown_environment()
    settings, receivers = _load_and_resolve(config)
    effective = settings.masked()
    for spec in effective["receivers"]:
        resolved = next(r for r in receivers if r.name == spec["name"])
        spec["url_path"] = f"/webhooks/{resolved.name}"
    sys.stdout.write(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command("diagnose")
def diagnose(
    headers_file: Annotated[
        Path,
        typer.Option(
            "--headers",
            help="The captured request's headers: 'Name: value' lines (a request line "
            "first is skipped) or a JSON object.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    body_file: Annotated[
        Path,
        typer.Option(
            "--body",
            help="The captured request's body, byte for byte.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    config: ConfigOption = None,
    receiver_name: Annotated[
        str | None,
        typer.Option(
            "--receiver",
            "-r",
            help="The receiver to check against (default: the only one configured).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a captured request against a receiver's authentication, and say what to set.

    Names the headers that arrived and, for an HMAC receiver, which header verifies with the
    configured secret under which algorithm and encoding. Exits 0 when the receiver accepts
    the request as configured, 1 when it refuses it.
    """
    from bridge.telemetry.diagnosis import offline_report, parse_headers

    _warn_unknown_environment()
    _, receivers = _load_and_resolve(config)
    if receiver_name is None and len(receivers) > 1:
        names = ", ".join(r.name for r in receivers)
        raise typer.BadParameter(f"several receivers ({names}): name one", param_hint="--receiver")
    chosen = [r for r in receivers if receiver_name in (None, r.name)]
    if not chosen:
        names = ", ".join(r.name for r in receivers)
        raise typer.BadParameter(
            f"no receiver {receiver_name!r} (configured: {names})", param_hint="--receiver"
        )
    try:
        headers = parse_headers(headers_file.read_text(encoding="utf-8", errors="surrogateescape"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--headers") from None
    receiver = chosen[0]
    accepted, lines = offline_report(receiver.verifier, headers, body_file.read_bytes())
    typer.echo(f"receiver {receiver.name} ({receiver.auth_method}):")
    for line in lines:
        typer.echo(f"  {line}")
    raise typer.Exit(code=0 if accepted else 1)


@app.command("tail", cls=_ReadsSettings)
def tail_command(
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TOPIC",
            help="Topics to read. Default: every topic the configured receivers publish to.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            "-p",
            help="Read every topic whose name matches this regular expression (e.g. '^alm\\.').",
            show_default=False,
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="Start at the oldest record kept (default: only records published from now on).",
        ),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Read as this consumer group and commit what was printed "
            "(default: no group, nothing committed).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line instead of text for people.")
    ] = False,
    max_records: Annotated[
        int | None,
        typer.Option(
            "--max-records",
            "-n",
            min=1,
            help="Stop after printing this many records (default: no limit).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            help="Stop after this many seconds without a new record (default: follow forever).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the records in Kafka (key, headers, value), with the bridge's Kafka settings.

    Reads with the same bootstrap servers, TLS and SASL settings as serve
    (BRIDGE_KAFKA_* or the YAML file). Exits 0 when a bound is reached, 3 when Kafka cannot
    be read, 130 on Ctrl-C.
    """
    from bridge.cli.tail import TailError, TailOptions, tail

    if topics and pattern is not None:
        raise typer.BadParameter("give topics or --pattern, not both", param_hint="--pattern")
    _warn_unknown_environment()
    settings = _kafka_settings(config)
    options = TailOptions(
        topics=tuple(topics or ()),
        pattern=pattern,
        from_beginning=from_beginning,
        group=group,
        as_json=as_json,
        max_records=max_records,
        idle_seconds=timeout,
    )

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        _run(tail(settings, options, emit))
    except TailError as exc:
        typer.echo(f"alm-bridge: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


def _moment(text: str | None, option: str) -> int | None:
    """An ISO-8601 time (UTC when it names no zone) as epoch milliseconds."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-12-07T10:00:00Z)", param_hint=option
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@app.command("replay", cls=_ReadsSettings)
def replay_command(
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="DEAD_LETTER_TOPIC",
            help="Dead-letter topics to read. Default: every configured receiver's.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            "--yes",
            help="Publish. Without it, a dry run: counts and examples, nothing written.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be replayed (the default).")
    ] = False,
    reasons: Annotated[
        list[str] | None,
        typer.Option("--reason", help="Only dead letters with this dlq_reason (repeatable)."),
    ] = None,
    receivers: Annotated[
        list[str] | None,
        typer.Option("--receiver", "-r", help="Only this receiver's (repeatable)."),
    ] = None,
    accounts: Annotated[
        list[int] | None,
        typer.Option("--account", help="Only events of this accountId (repeatable)."),
    ] = None,
    event_names: Annotated[
        list[str] | None,
        typer.Option("--event-name", "-e", help="Only events of this name (repeatable)."),
    ] = None,
    destinations: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            "-t",
            help="Only events meant for this topic (dlq_topic) or routed to it now (repeatable).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only dead letters written at or after this ISO-8601 time (UTC)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only dead letters written before this ISO-8601 time."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", min=0.1, help="At most this many events a second (default: no limit)."
        ),
    ] = None,
    progress_topic: Annotated[
        str,
        typer.Option(
            "--progress-topic",
            help="Compacted topic recording what was replayed (created when missing and "
            "BRIDGE_KAFKA_AUTO_CREATE_TOPICS is on).",
        ),
    ] = "alm-bridge.replay-progress",
    examples: Annotated[
        int, typer.Option("--examples", min=0, help="How many examples to show.")
    ] = 3,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Publish dead letters again, to where live traffic would send them now.

    A dry run unless --apply (or --yes) is given: counts by dlq_reason and by destination,
    and a few examples. With --apply, each event is published with its original key and
    headers (the dlq_* ones replaced by replay_source, replay_dlq_reason, replay_dlq_error
    and replay_dlq_time), through the receiver's current routing, the same topic checks
    and duplicate rule as live traffic, at most --rate events a second. Reads and writes
    with the same BRIDGE_KAFKA_* settings as serve (TLS, SASL).

    Exactly once across runs and crashes: each event is recorded in the progress topic
    (pending before it is produced, done once Kafka acknowledged it); a re-run skips what
    is done and looks for what was pending in its topic. Dead letters that still fail stay
    where they are, counted by reason, and are tried again by the next run.

    Exits 0 when every selected event is in its topic (or could be, in a dry run: 0 as
    well), 1 when some still fail, 2 on invalid options or configuration, 3 when Kafka
    cannot be read or written, 130 on Ctrl-C.
    """
    from bridge.cli.deadletters import Filters, summary_lines
    from bridge.cli.replay import ReplayError, ReplayOptions, replay
    from bridge.telemetry.logs import configure

    if apply and dry_run:
        raise typer.BadParameter("give --apply or --dry-run, not both", param_hint="--dry-run")
    filters = Filters(
        reasons=frozenset(reasons or ()),
        receivers=frozenset(receivers or ()),
        accounts=frozenset(accounts or ()),
        event_names=frozenset(event_names or ()),
        topics=frozenset(destinations or ()),
        since_ms=_moment(since, "--since"),
        until_ms=_moment(until, "--until"),
    )
    _warn_unknown_environment()
    settings = _kafka_settings(config)
    # Standard output is for the summary; the log (Kafka's warnings) goes to stderr.
    configure("warning", settings.log_format, stream=sys.stderr.buffer)
    options = ReplayOptions(
        topics=tuple(topics or ()),
        filters=filters,
        apply=apply,
        rate=rate,
        progress_topic=progress_topic,
        examples=examples,
    )
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not console.is_terminal,
    )
    task = bar.add_task("dead letters", total=None, status="")

    def on_chunk(tally: Any, total: int) -> None:
        status = (f"replayed {tally.replayed}" if apply else f"would replay {tally.replayable}") + (
            f", failing {sum(tally.failing.values())}" if tally.failing else ""
        )
        bar.update(task, completed=tally.scanned, total=total, status=status)

    try:
        with bar:
            tally = _run(replay(settings, options, on_chunk=on_chunk))
    except ReplayError as exc:
        typer.echo(f"alm-bridge: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    if as_json:
        sys.stdout.write(orjson.dumps(tally.as_json(applied=apply)).decode() + "\n")
    else:
        for line in summary_lines(tally, applied=apply):
            typer.echo(line)
        if not apply:
            typer.echo("  nothing was written: run again with --apply to publish")
    raise typer.Exit(code=0 if (tally.complete or not apply) else 1)


@app.command("canary", cls=_ReadsSettings)
def canary_command(
    url: Annotated[
        str,
        typer.Argument(help="The public webhook URL, e.g. https://alm.example.com/webhooks/alm."),
    ],
    config: ConfigOption = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="HMAC signing secret.", show_default=False)
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            help="File with the HMAC secret: plain text or ALM's JSON download.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="USER:PASS for a basic receiver.", show_default=False),
    ] = None,
    hmac_header: Annotated[
        str, typer.Option("--hmac-header", help="Header carrying the signature.")
    ] = "X-ALM-Signature",
    account_id: Annotated[
        int,
        typer.Option(
            "--account-id", min=1, help="The accountId of the batch: one the receiver accepts."
        ),
    ] = 1,
    topic: Annotated[
        str | None,
        typer.Option(
            "--topic",
            help="The canary topic to read back (default: the canary topic of the receiver "
            "the URL names, when configured here; else alm.canary).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1.0, help="Seconds for the answer and the read-back."),
    ] = 30.0,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            help="Trust HTTPS certificates signed by the CA in this PEM file.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send one signed canary batch through URL and read it back from Kafka.

    The event (ALM_BRIDGE_CANARY) goes to the receiver's canary topic, never to a topic of
    the consumers. Prints one JSON line (answer and end-to-end milliseconds, the record's
    place); exits 0 when the record is in Kafka, 1 when it is not (or the answer was not
    200), 3 when Kafka cannot be read. Kafka is read with the bridge's own settings
    (BRIDGE_KAFKA_*).
    """
    from bridge.cli.canary import CanaryError, run_canary
    from bridge.cli.sender.options import SendOptions, auth_headers

    _warn_unknown_environment()
    settings = _kafka_settings(config)
    receivers = settings.effective_receivers()
    name = url.rstrip("/").rsplit("/", 1)[-1]
    chosen = topic or next(
        (r.routing.canary_topic for r in receivers if r.name == name), DEFAULT_CANARY_TOPIC
    )
    try:
        options = SendOptions.model_validate(
            {
                "url": url,
                "generate": True,
                "hmac_secret": (secret or "").encode(),
                "hmac_secret_file": secret_file,
                "basic_user": user,
                "hmac_header": hmac_header,
            }
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        result = _run(
            run_canary(
                url,
                settings=settings,
                topic=chosen,
                account_id=account_id,
                sign=lambda body: auth_headers(options, body),
                timeout_seconds=timeout,
                ca_file=ca_file,
            )
        )
    except CanaryError as exc:
        typer.echo(f"alm-bridge: {exc.detail}", err=True)
        raise typer.Exit(code=3) from None
    sys.stdout.write(result.as_json() + "\n")
    raise typer.Exit(code=0 if result.ok else 1)


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
    from bridge.contract import build_document, render, sample_bodies

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
