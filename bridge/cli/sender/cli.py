"""The ``send`` command line, built from the declarations in :mod:`bridge.cli.sender.options`.

Every run option becomes one parameter of :func:`send_command`, taken as text (booleans
as switches) and handed to :class:`~bridge.cli.sender.options.SendOptions` to parse and check,
so that the command line and programmatic callers share one set of rules. Only three
parameters belong to the command itself: ``--challenge``, ``--json`` and ``--progress``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from typer.core import TyperCommand

from bridge.cli.sender.engine import resolve_seed, run_challenge, run_send
from bridge.cli.sender.options import (
    BatchSize,
    Flag,
    Positional,
    SendOptions,
    build_options,
    command_line_fields,
)
from bridge.cli.sender.results import RequestResult, SendSummary, summarize
from bridge.cli.sender.sources import planned_batches

_SHORT_HELP = "Play ALM against URL: send signed webhook batches like ALM does."
_COMMAND_HELP = """Play Adobe Learning Manager against URL: send signed webhook batches like ALM.

URL is the webhook URL, e.g. http://127.0.0.1:8080/webhooks/alm.

Exit status: 0 if every batch was finally answered with a 2xx, 1 otherwise, 2 on misuse.
"""


def _default_text(default: Any) -> str | None:
    """The default as ``--help`` shows it, or None to show none."""
    if default is None or default is False or default in ((), b"", ""):
        return None
    if isinstance(default, BatchSize):
        return str(default.smallest) if default.largest is None else "-".join(map(str, default))
    if isinstance(default, tuple):
        return (
            "default"
            if all(isinstance(item, str) for item in default)
            else ",".join(map(str, default))
        )
    return str(default)


def _parameter(name: str, info: FieldInfo, declared: Flag | Positional) -> inspect.Parameter:
    keyword = inspect.Parameter.KEYWORD_ONLY
    if isinstance(declared, Positional):
        # Described in the command's help, since typer would list it with a Python type.
        annotation: Any = Annotated[str, typer.Argument(metavar=declared.metavar, hidden=True)]
        return inspect.Parameter(declared.parameter, keyword, annotation=annotation)
    if info.annotation is bool:
        names = f"{declared.name}/{declared.negative}" if declared.negative else declared.name
        option = typer.Option(names, help=declared.help, show_default=bool(declared.negative))
        return inspect.Parameter(
            declared.parameter, keyword, annotation=Annotated[bool, option], default=info.default
        )
    # The option's own default stays None ("not given"), so the model's default applies;
    # the help text shows that default.
    default = declared.shown_default or _default_text(info.default)
    option = typer.Option(
        declared.name,
        help=declared.help if default is None else f"{declared.help}  [default: {default}]",
        metavar=declared.metavar,
        show_default=False,
    )
    text: Any = list[str] | None if declared.repeatable else str | None
    return inspect.Parameter(
        declared.parameter, keyword, annotation=Annotated[text, option], default=None
    )


_OWN_PARAMETERS = [
    inspect.Parameter(
        "challenge",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--challenge",
                metavar="VALUE",
                help="Send GET ?challenge=VALUE and POST {challenge: VALUE}, show both "
                "answers, exit.",
            ),
        ],
        default=None,
    ),
    inspect.Parameter(
        "json_path",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--json",
                metavar="PATH",
                help="Write the summary and every request's record here.",
                dir_okay=False,
            ),
        ],
        default=None,
    ),
    inspect.Parameter(
        "progress",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            bool,
            typer.Option(
                "--progress/--no-progress", help="Progress bar (only when stdout is a terminal)."
            ),
        ],
        default=True,
    ),
]


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors in the command line's words: ``--concurrency: ...``."""
    flags = {name: declared for name, (_, declared) in command_line_fields().items()}
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        where = error["loc"][0] if error["loc"] else None
        declared = flags.get(str(where)) if where is not None else None
        if isinstance(declared, Flag):
            lines.append(f"{declared.name}: {message}")
        elif isinstance(declared, Positional):
            lines.append(f"{declared.metavar}: {message}")
        else:
            lines.append(message)
    return lines[0] if len(lines) == 1 else "\n" + "\n".join(f"  {line}" for line in lines)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def send_command(**values: Any) -> None:
    """Play Adobe Learning Manager against URL (see ``_COMMAND_HELP``)."""
    challenge: str | None = values.pop("challenge")
    json_path: Path | None = values.pop("json_path")
    progress: bool = values.pop("progress")
    try:
        options = build_options(**values)
    except ValidationError as exc:
        raise typer.BadParameter(_problems(exc)) from None

    # rich is only needed to show results, so the other commands never import it.
    from rich.console import Console

    from bridge.cli.sender.display import challenge_table, progress_bar, summary_table

    console = Console()
    if challenge is not None:
        report = asyncio.run(run_challenge(options, challenge))
        console.print(challenge_table(report))
        if json_path is not None:
            _write_json(json_path, report.to_dict())
        raise typer.Exit(0 if report.ok else 1)

    seed_used = resolve_seed(options)
    total = planned_batches(options) + options.resend
    results: list[RequestResult] = []
    started = time.perf_counter()
    with progress_bar(console, progress and console.is_terminal) as bar:
        task = bar.add_task("sending", total=total)
        counts = Counter[str]()

        def on_result(result: RequestResult) -> None:
            results.append(result)
            if not result.final:
                counts["retries"] += 1
                return
            counts["ok" if result.acknowledged else "failed"] += 1
            bar.update(
                task,
                advance=1,
                description=f"sending  ok {counts['ok']}  failed {counts['failed']}  "
                f"retries {counts['retries']}",
            )

        interrupted = False
        summary: SendSummary | None = None
        try:
            summary = asyncio.run(run_send(options, on_result=on_result, seed=seed_used))
        except KeyboardInterrupt:
            interrupted = True
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {exc.filename}: {exc.strerror}") from None
    if summary is None:
        summary = summarize(
            results,
            url=options.url,
            seed=seed_used,
            elapsed_seconds=time.perf_counter() - started,
            interrupted=interrupted,
        )
    console.print(summary_table(summary))
    if json_path is not None:
        _write_json(json_path, summary.to_dict())
    if interrupted:
        raise typer.Exit(130)
    raise typer.Exit(summary.exit_code)


send_command.__doc__ = _COMMAND_HELP
send_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_parameter(name, info, declared) for name, (info, declared) in command_line_fields().items()]
    + _OWN_PARAMETERS
)


class _SendCommand(TyperCommand):
    """Writes the usage line as ``[OPTIONS] URL``, as the README does (typer writes ``{URL}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


def typer_app() -> typer.Typer:
    """``send`` as a one-command Typer app, with plain help that wraps at any width."""
    app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
    app.command("send", cls=_SendCommand, help=_COMMAND_HELP, short_help=_SHORT_HELP)(send_command)
    return app


def main() -> None:
    """Runs ``send`` on its own: ``python -m bridge.cli.sender URL [OPTIONS]``."""
    typer_app()(prog_name="python -m bridge.cli.sender")


# SendOptions is re-exported for callers that build options the way the command does.
__all__ = ["SendOptions", "main", "send_command", "typer_app"]
