"""The options of one ``send`` run, declared once and validated once.

:class:`SendOptions` is a frozen pydantic model. Each field that the command line sets
carries a :class:`Flag` (or, for the URL, a :class:`Positional`) with its name, metavar and
help; :mod:`bridge.cli.sender.cli` builds the command's parameters from those, passes the text
through unchanged, and lets this model parse and check it. Programmatic callers (tests, the
system-test harness) construct the same model, so both paths share every rule and message.

A pydantic model rather than typer's parameters as the declaration: options are built
without a command line as often as with one, pydantic reports every bad field at once, and
the parsing of structured text (``MIN-MAX``, ``USER:PASS``, ``Name: value``, a mix) and the
rules between fields (hmac needs a secret) then have one home that both paths go through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from bridge.cli.sender.generation import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_MIX,
    FAMILIES,
    DialectChoice,
    parse_mix,
)
from bridge.cli.sender.sources import load_secret, read_sample
from bridge.core.auth import (
    DEFAULT_ALGORITHM,
    DEFAULT_ENCODING,
    DEFAULT_HMAC_HEADER,
    Algorithm,
    Encoding,
    basic_authorization,
    sign_hmac,
)

AuthMethod = Literal["none", "basic", "hmac"]
USER_AGENT: Final = "alm-bridge-send"


@dataclass(frozen=True, slots=True)
class Flag:
    """How a field is set from the command line: ``--name METAVAR``, help text.

    ``repeatable`` options collect every occurrence; ``negative`` names the switch that
    turns a boolean off. The default shown in ``--help`` is the field's own default, or
    ``shown_default`` when the default depends on other options.
    """

    name: str
    help: str
    metavar: str = ""
    repeatable: bool = False
    negative: str | None = None
    # What ``--help`` shows as the default when the field's own default would mislead.
    shown_default: str | None = None

    @property
    def parameter(self) -> str:
        """The Python name of the command's parameter: ``--batch-size`` → ``batch_size``."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Positional:
    """A positional command-line argument (the webhook URL)."""

    metavar: str
    help: str

    @property
    def parameter(self) -> str:
        return self.metavar.lower()


class BatchSize(NamedTuple):
    """Events per generated batch: exactly ``smallest``, or ``smallest``..``largest``."""

    smallest: int
    largest: int | None = None


@dataclass(frozen=True, slots=True)
class BasicUser:
    """A username and password for HTTP Basic; the password stays out of ``repr``."""

    username: str
    password: str = field(repr=False)


def parse_batch_size(text: str) -> BatchSize:
    """``"10"`` or ``"1-50"``."""
    low, sep, high = text.strip().partition("-")
    try:
        smallest = int(low)
        largest = int(high) if sep else None
    except ValueError:
        raise ValueError(f"batch size must be N or MIN-MAX, not {text!r}") from None
    return BatchSize(smallest, largest)


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` as a header pair."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"a header must be 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _choices(annotation: Any) -> str:
    return "|".join(get_args(annotation))


class SendOptions(BaseModel):
    """Everything one ``send`` run needs. Secrets are left out of ``repr``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, Positional("URL", "Webhook URL, e.g. http://127.0.0.1:8080/webhooks/alm")]
    samples: Annotated[
        tuple[str, ...],
        Flag(
            "--sample",
            "Packaged sample body to send (repeatable): enrollment-batch, mixed-realtime, "
            "setup-guide-dialect, or all.",
            "NAME",
            repeatable=True,
        ),
    ] = ()
    files: Annotated[
        tuple[Path, ...],
        Flag("--file", "A file whose bytes are sent as a body (repeatable).", "PATH", True),
    ] = ()
    # Generated batches are used when no sample or file is given, or when asked for.
    generate: Annotated[
        bool,
        Flag(
            "--generate",
            "Also send generated batches when --sample/--file are given (generated batches "
            "are the default without them).",
        ),
    ] = False
    # None: one request per sample/file given, or one generated batch.
    count: Annotated[
        int | None,
        Field(ge=1),
        Flag(
            "--count",
            "Number of batches, cycling over the sources (default: one per source).",
            "N",
        ),
    ] = None
    batch_size: Annotated[
        BatchSize, Flag("--batch-size", "Events per generated batch: N or MIN-MAX.", "N|MIN-MAX")
    ] = BatchSize(10)
    mix: Annotated[
        tuple[str, ...],
        Flag(
            "--mix",
            "Families of generated events with weights, e.g. enrollment:3,completion,"
            "progress:2; 'all' or 'default'. Families: " + ", ".join(FAMILIES) + ".",
            "MIX",
        ),
    ] = DEFAULT_MIX
    dialect: Annotated[
        DialectChoice,
        Flag("--dialect", "Payload dialect of generated batches.", _choices(DialectChoice)),
    ] = "guide"
    account_ids: Annotated[
        tuple[Annotated[int, Field(ge=0)], ...],
        Field(min_length=1),
        Flag("--account-id", "accountId of generated batches (repeatable).", "ID", True),
    ] = (DEFAULT_ACCOUNT_ID,)
    # None: a random seed, reported in the summary so that the run can be repeated.
    seed: Annotated[
        int | None,
        Flag("--seed", "Seed for generated batches (same seed, same event ids).", "N"),
    ] = None
    # Base time of generated events; None: the start of the run. Not on the command line.
    now: datetime | None = None
    # When not given: hmac if a secret is, basic if a user is, else none.
    auth: Annotated[
        AuthMethod,
        Flag(
            "--auth",
            "Credentials to send.",
            _choices(AuthMethod),
            shown_default="hmac when --secret or --secret-file is given, basic when --user "
            "is, else none",
        ),
    ] = "none"
    basic_user: Annotated[
        BasicUser | None, Flag("--user", "USER:PASS for --auth basic.", "USER:PASS")
    ] = None
    hmac_secret: Annotated[
        bytes, Field(repr=False), Flag("--secret", "HMAC signing secret.", "SECRET")
    ] = b""
    hmac_secret_file: Annotated[
        Path | None,
        Flag(
            "--secret-file", "File with the HMAC secret: plain text or ALM's JSON download.", "PATH"
        ),
    ] = None
    hmac_header: Annotated[str, Flag("--hmac-header", "Header carrying the signature.", "NAME")] = (
        DEFAULT_HMAC_HEADER
    )
    hmac_algorithm: Annotated[
        Algorithm, Flag("--hmac-algorithm", "HMAC hash.", _choices(Algorithm))
    ] = DEFAULT_ALGORITHM
    hmac_encoding: Annotated[
        Encoding, Flag("--hmac-encoding", "Encoding of the digest.", _choices(Encoding))
    ] = DEFAULT_ENCODING
    hmac_prefix: Annotated[
        bool,
        Flag("--hmac-prefix", "Send 'sha256=<digest>'.", negative="--no-hmac-prefix"),
    ] = False
    extra_headers: Annotated[
        tuple[tuple[str, str], ...],
        Flag("--header", "Extra request header 'Name: value' (repeatable).", "'NAME: VALUE'", True),
    ] = ()
    ca_file: Annotated[
        Path | None,
        Flag(
            "--ca-file",
            "Trust the HTTPS certificates signed by the CA in this PEM file (as well as the "
            "system's).",
            "PATH",
        ),
    ] = None
    concurrency: Annotated[
        int,
        Field(ge=1),
        Flag(
            "--concurrency",
            "Independent senders; each waits for its answer before sending again.",
            "N",
        ),
    ] = 1
    # Requests per second over all senders, retries included; 0 means unlimited.
    rate: Annotated[
        float,
        Field(ge=0),
        Flag("--rate", "Overall cap in requests/s (0 = unlimited).", "PER_SECOND"),
    ] = 0.0
    timeout_seconds: Annotated[
        float, Field(gt=0), Flag("--timeout", "Seconds to wait for each answer.", "SECONDS")
    ] = 5.0
    resend: Annotated[
        int,
        Field(ge=0),
        Flag("--resend", "Afterwards, send K acknowledged batches again (duplicates).", "K"),
    ] = 0
    retry_until_acknowledged: Annotated[
        bool,
        Flag(
            "--retry-until-acknowledged",
            "Like ALM, resend a batch with backoff until it gets a 2xx.",
        ),
    ] = False
    max_batch_retry_seconds: Annotated[
        float,
        Field(ge=0),
        Flag(
            "--max-batch-retry-seconds",
            "With --retry-until-acknowledged: give each batch up after retrying it this long "
            "(per batch; --max-run-seconds bounds the whole run).",
            "SECONDS",
        ),
    ] = 60.0
    # 0: no bound. A run stops starting requests (first sends and retries) once it is up.
    max_run_seconds: Annotated[
        float,
        Field(ge=0),
        Flag(
            "--max-run-seconds",
            "Stop the whole run after this long: no request is started later, batches not "
            "sent by then count as failed (0 = no limit).",
            "SECONDS",
        ),
    ] = 3600.0
    retry_backoff_base_seconds: Annotated[
        float,
        Field(gt=0),
        Flag("--retry-backoff-base", "First retry delay in seconds.", "SECONDS"),
    ] = 0.5
    retry_backoff_max_seconds: Annotated[
        float,
        Field(gt=0),
        Flag("--retry-backoff-max", "Longest retry delay in seconds.", "SECONDS"),
    ] = 5.0

    @model_validator(mode="before")
    @classmethod
    def _secret_and_auth(cls, data: Any) -> Any:
        """Reads ``--secret-file`` and infers ``--auth`` when it was not given."""
        if not isinstance(data, Mapping):
            return data
        values = dict(data)
        secret_file = values.get("hmac_secret_file")
        if values.get("hmac_secret") and secret_file is not None:
            raise ValueError("give --secret or --secret-file, not both")
        if secret_file is not None:
            try:
                values["hmac_secret"] = load_secret(secret_file)
            except OSError as exc:
                raise ValueError(
                    f"cannot read the secret file {secret_file}: {exc.strerror}"
                ) from None
        if values.get("auth") is None:
            values["auth"] = (
                "hmac"
                if values.get("hmac_secret")
                else "basic"
                if values.get("basic_user") is not None
                else "none"
            )
        return values

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the URL must start with http:// or https://, not {url!r}")
        return url

    @field_validator("samples", mode="before")
    @classmethod
    def _known_samples(cls, names: Any) -> Any:
        for name in (names,) if isinstance(names, str) else names:
            if name != "all":
                read_sample(name)
        return names

    @field_validator("files")
    @classmethod
    def _existing_files(cls, paths: tuple[Path, ...]) -> tuple[Path, ...]:
        for path in paths:
            if not path.is_file():
                raise ValueError(f"no such file: {path}")
        return paths

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_text(cls, value: Any) -> Any:
        return parse_batch_size(value) if isinstance(value, str) else value

    @field_validator("batch_size")
    @classmethod
    def _batch_size_bounds(cls, value: BatchSize) -> BatchSize:
        if value.smallest < 0:
            raise ValueError("the batch size must not be negative")
        if value.largest is not None and value.largest < value.smallest:
            raise ValueError("the largest batch size is below the smallest")
        return value

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_text(cls, value: Any) -> Any:
        return parse_mix(value) if isinstance(value, str) else value

    @field_validator("mix")
    @classmethod
    def _known_families(cls, mix: tuple[str, ...]) -> tuple[str, ...]:
        if not mix or set(mix) - set(FAMILIES):
            raise ValueError(f"the mix must name families among {', '.join(FAMILIES)}")
        return mix

    @field_validator("basic_user", mode="before")
    @classmethod
    def _user_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            username, sep, password = value.partition(":")
            if not sep:
                raise ValueError("must be USER:PASS")
            return BasicUser(username, password)
        return value

    @field_validator("extra_headers", mode="before")
    @classmethod
    def _header_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(parse_header(item) if isinstance(item, str) else item for item in value)
        return value

    @field_validator("hmac_header")
    @classmethod
    def _header_name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("the HMAC header name is empty")
        return name

    @model_validator(mode="after")
    def _credentials_present(self) -> SendOptions:
        if self.auth == "basic" and (self.basic_user is None or not self.basic_user.username):
            raise ValueError("basic auth needs a username (--user USER:PASS)")
        if self.auth == "hmac" and not self.hmac_secret:
            raise ValueError("hmac auth needs a secret (--secret or --secret-file)")
        return self


def command_line_fields() -> dict[str, tuple[FieldInfo, Flag | Positional]]:
    """The fields set from the command line, with their declarations, in order."""
    found: dict[str, tuple[FieldInfo, Flag | Positional]] = {}
    for name, info in SendOptions.model_fields.items():
        for item in info.metadata:
            if isinstance(item, Flag | Positional):
                found[name] = (info, item)
    return found


def build_options(url: str, **values: Any) -> SendOptions:
    """:class:`SendOptions` from command-line parameter names (``sample``, ``user``…).

    ``None`` and empty repeatable options mean "not given", so the model's default applies.
    Raises ``ValueError`` (pydantic's ``ValidationError``) on misuse.
    """
    by_parameter = {
        declared.parameter: name for name, (_, declared) in command_line_fields().items()
    }
    data: dict[str, Any] = {"url": url}
    for parameter, value in values.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        data[by_parameter[parameter]] = value
    return SendOptions.model_validate(data)


def auth_headers(options: SendOptions, body: bytes) -> dict[str, str]:
    """The headers of one request: content type, extra headers, then the credentials."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update(dict(options.extra_headers))
    if options.auth == "basic" and options.basic_user is not None:
        headers["Authorization"] = basic_authorization(
            options.basic_user.username, options.basic_user.password
        )
    elif options.auth == "hmac":
        headers[options.hmac_header] = sign_hmac(
            body,
            options.hmac_secret,
            algorithm=options.hmac_algorithm,
            encoding=options.hmac_encoding,
            prefix=options.hmac_prefix,
        )
    return headers
