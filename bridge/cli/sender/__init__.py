"""The ``send`` command: plays Adobe Learning Manager against any webhook URL.

It sends batches the way ALM does (one request waits for its answer before the next is
sent, 5 s response timeout, retries with backoff until a 2xx) so a receiver can be tested
without exposing it through a tunnel. Bodies come from the packaged samples, from files, or
from a generator of realistic events in both payload dialects.

Modules, pure ones first:

- :mod:`~bridge.cli.sender.generation`: realistic events and batches from a seed;
- :mod:`~bridge.cli.sender.sources`: samples, files and the plan of which body each request sends;
- :mod:`~bridge.cli.sender.options`: :class:`SendOptions`, the one declaration of every option;
- :mod:`~bridge.cli.sender.results`: per-request records and the summary;
- :mod:`~bridge.cli.sender.engine`: the async senders (aiohttp);
- :mod:`~bridge.cli.sender.display`: rich tables and progress (imported by the command only);
- :mod:`~bridge.cli.sender.cli`: the command line built from the options' declarations.

Only ``alm-bridge send`` imports this package; ``serve`` never does.
"""

from bridge.cli.sender.cli import send_command
from bridge.cli.sender.engine import resolve_seed, run_challenge, run_send
from bridge.cli.sender.generation import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_MIX,
    DEFAULT_MIX_WEIGHTS,
    FAMILIES,
    Dialect,
    DialectChoice,
    expand_mix,
    generate_batch,
    generate_events,
    parse_mix,
)
from bridge.cli.sender.options import (
    AuthMethod,
    BasicUser,
    BatchSize,
    SendOptions,
    auth_headers,
    build_options,
    parse_batch_size,
)
from bridge.cli.sender.results import (
    ChallengeAnswer,
    ChallengeReport,
    LatencyStats,
    RequestResult,
    SendSummary,
    summarize,
)
from bridge.cli.sender.sources import (
    BatchBody,
    SourcePlan,
    describe_body,
    load_secret,
    planned_batches,
    read_sample,
    sample_names,
)
from bridge.core.stats import percentile

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_MIX",
    "DEFAULT_MIX_WEIGHTS",
    "FAMILIES",
    "AuthMethod",
    "BasicUser",
    "BatchBody",
    "BatchSize",
    "ChallengeAnswer",
    "ChallengeReport",
    "Dialect",
    "DialectChoice",
    "LatencyStats",
    "RequestResult",
    "SendOptions",
    "SendSummary",
    "SourcePlan",
    "auth_headers",
    "build_options",
    "describe_body",
    "expand_mix",
    "generate_batch",
    "generate_events",
    "load_secret",
    "parse_batch_size",
    "parse_mix",
    "percentile",
    "planned_batches",
    "read_sample",
    "resolve_seed",
    "run_challenge",
    "run_send",
    "sample_names",
    "send_command",
    "summarize",
]
