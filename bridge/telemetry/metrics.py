"""Prometheus metric families, all built in one place on one registry.

Labels are small closed sets only: receiver names from the configuration (plus
``unknown``), status classes, outcomes, event families and reason codes. No label ever
carries an id, an account or a raw path.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import platform
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bridge import __version__
from bridge.core.reasons import (
    BATCH_OUTCOMES,
    FALLBACK_REASONS,
    AuthReason,
    BodyReadCut,
    DeadLetterReason,
    FleetWriteFailure,
    HeaderCut,
    ReloadResult,
)
from bridge.core.routing import FAMILIES

DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10)
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
# From seconds (real-time events) to a day (batch events, a replay, an ALM backlog).
EVENT_LAG_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# From "a few callbacks queued" (1 ms) to "the process is stuck" (seconds).
LOOP_LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# The closed sets of labels are defined in bridge.core.reasons; these are their series.
OUTCOMES: Final = BATCH_OUTCOMES
AUTH_REASONS: Final = tuple(AuthReason)
DEAD_LETTER_REASONS: Final = tuple(DeadLetterReason)
BODY_READ_OUTCOMES: Final = tuple(BodyReadCut)
HEADER_CUTS: Final = tuple(HeaderCut)
FLEET_WRITE_FAILURES: Final = tuple(FleetWriteFailure)
RELOAD_RESULTS: Final = tuple(ReloadResult)
STATUS_CLASSES: Final = ("2xx", "4xx", "5xx")
UNKNOWN_RECEIVER: Final = "unknown"

M = TypeVar("M", Counter, Gauge, Histogram)


class CountedHistogram(Collector):
    """A histogram that takes an observation with its count: ``observe(labels, value, n)``.

    The events of a batch mostly share their time, so their lags are a few values with a
    count each, while prometheus_client's ``Histogram`` takes one observation per call (a
    lock and a search of the buckets each): a hundred calls for a batch of a hundred
    events. Exposed exactly as that ``Histogram`` (same name, labels and buckets, no
    ``_created``) would be. Only the event loop's thread observes and collects.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = [float(b) for b in buckets]
        self._les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        # Per label values: the count of each bucket (the last: above every bound), then
        # the sum of the values observed.
        self._series: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def labels(self, *values: str) -> None:
        """Declare the series of ``values`` (at zero until observed)."""
        if values not in self._series:
            self._series[values] = [0.0] * (len(self._bounds) + 2)

    def observe(self, values: tuple[str, ...], amount: float, count: int = 1) -> None:
        series = self._series.get(values)
        if series is None:
            self.labels(*values)
            series = self._series[values]
        series[bisect.bisect_left(self._bounds, amount)] += count
        series[-1] += amount * count

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, series in self._series.items():
            cumulative = itertools.accumulate(series[:-1])
            buckets = list(zip(self._les, cumulative, strict=True))
            family.add_metric(list(values), buckets, series[-1])
        yield family


def children(metric: M) -> Callable[..., M]:
    """``metric.labels``, remembered per label values.

    The client checks the values and takes a lock on every ``labels()`` call, and every
    request pays several; a dict lookup does the same once the child exists. Bounded
    anyway, though every label value here comes from a closed set.
    """
    return functools.lru_cache(maxsize=1024)(metric.labels)


class Metrics:
    """Every metric the bridge exports."""

    def __init__(
        self, *, registry: CollectorRegistry | None = None, receivers: Iterable[str] = ()
    ) -> None:
        # Every counter and histogram would otherwise carry a `_created` series of its own,
        # which doubles the exposition; restarts show in process_start_time_seconds instead.
        # prometheus_client's switch is process-wide: thrown when metrics are made, never
        # as a side effect of importing this module.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "almbridge_http_requests",
            "Webhook requests answered, by receiver and status class.",
            ["receiver", "status_class"],
            registry=r,
        )
        self.batches = Counter(
            "almbridge_batches",
            "Webhook batches by outcome.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.events_published = Counter(
            "almbridge_events_published",
            "Events acknowledged by Kafka, by receiver and event family.",
            ["receiver", "family"],
            registry=r,
        )
        self.auth_failures = Counter(
            "almbridge_auth_failures",
            "Requests that failed authentication, by reason.",
            ["receiver", "reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "almbridge_request_duration_seconds",
            "Time from request start to response, webhook routes only.",
            ["receiver"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.publish_duration = Histogram(
            "almbridge_publish_duration_seconds",
            "Time for Kafka to acknowledge every record of a batch.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last_accepted = Gauge(
            "almbridge_last_accepted_timestamp_seconds",
            "When a batch of the receiver and account was last accepted (answered 2xx); "
            "account is a configured account of the receiver, or other.",
            ["receiver", "account"],
            registry=r,
        )
        self.last_accepted_by = children(self.last_accepted)
        self.max_silence = Gauge(
            "almbridge_receiver_max_silence_seconds",
            "How long the receiver's accounts may stay silent before AlmBridgeAccountSilent "
            "(liveness.max_silence_seconds; 0: no expectation).",
            ["receiver"],
            registry=r,
        )
        self.canary_seen = Gauge(
            "almbridge_canary_last_success_timestamp_seconds",
            "When a batch of alm-bridge canary last reached the receiver and Kafka "
            "acknowledged it (through the public URL when the canary runs from outside).",
            ["receiver"],
            registry=r,
        )
        self.event_lag = CountedHistogram(
            "almbridge_event_lag_seconds",
            "From an event's own time (ALM's timestamp, either dialect) to Kafka's "
            "acknowledgement of its record, by receiver and event family.",
            ["receiver", "family"],
            buckets=EVENT_LAG_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "almbridge_batch_events",
            "Events per accepted batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "almbridge_inflight_batches", "Batches being processed now.", registry=r
        )
        self.kafka_up = Gauge(
            "almbridge_kafka_up", "1 when the producer reaches the Kafka cluster.", registry=r
        )
        self.ready = Gauge("almbridge_ready", "1 when /readyz answers 200.", registry=r)
        self.event_loop_lag = Histogram(
            "almbridge_event_loop_lag_seconds",
            "How late a periodic timer of the event loop fired: time every request waits "
            "before the process gets to it.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.duplicates = Counter(
            "almbridge_duplicates_suppressed",
            "Events not published again because Kafka already acknowledged them.",
            ["receiver"],
            registry=r,
        )
        self.events_joined = Counter(
            "almbridge_resent_events_joined",
            "Re-sent events not produced again because an earlier attempt still had them in "
            "flight: the re-send waits for that attempt's acknowledgement instead.",
            ["receiver"],
            registry=r,
        )
        # The fleet's memory (BRIDGE_DEDUPE_FLEET_TOPIC, bridge.kafka.fleet).
        self.fleet_suppressed = Counter(
            "almbridge_dedupe_fleet_suppressed",
            "Duplicates (counted in almbridge_duplicates_suppressed_total too) that this "
            "process knew from the fleet topic: another replica, or an earlier run, "
            "acknowledged them.",
            ["receiver"],
            registry=r,
        )
        self.fleet_entries_loaded = Counter(
            "almbridge_dedupe_fleet_entries_loaded",
            "Event digests read from the fleet topic that were new to the duplicates window.",
            ["receiver"],
            registry=r,
        )
        self.fleet_loaded = Gauge(
            "almbridge_dedupe_fleet_loaded",
            "1 once the fleet topic's entries younger than the window's age are loaded.",
            registry=r,
        )
        self.fleet_lag = Gauge(
            "almbridge_dedupe_fleet_lag_records",
            "Records of the fleet topic not read yet, at the last read.",
            registry=r,
        )
        self.fleet_last_read = Gauge(
            "almbridge_dedupe_fleet_last_read_timestamp_seconds",
            "Unix time of the last answer Kafka gave to a read of the fleet topic.",
            registry=r,
        )
        self.fleet_writes = Counter(
            "almbridge_dedupe_fleet_writes",
            "Event digests Kafka stored in the fleet topic.",
            registry=r,
        )
        self.fleet_writes_failed = Counter(
            "almbridge_dedupe_fleet_writes_failed",
            "Event digests not written to the fleet topic: dropped (the queue was full, or "
            "the topic refused) or failed (Kafka did not store them).",
            ["reason"],
            registry=r,
        )
        for failure in FLEET_WRITE_FAILURES:
            self.fleet_writes_failed.labels(failure)
        self.fleet_read_errors = Counter(
            "almbridge_dedupe_fleet_read_errors",
            "Reads of the fleet topic that failed (retried every second).",
            registry=r,
        )
        self.dead_letters = Counter(
            "almbridge_dead_letters",
            "Records written to the dead-letter topic, by reason.",
            ["receiver", "reason"],
            registry=r,
        )
        self.topic_fallbacks = Counter(
            "almbridge_topic_fallbacks",
            "Events whose name could not use the topic template (sent to the catch-all or "
            "dead-letter topic instead), by reason.",
            ["receiver", "reason"],
            registry=r,
        )
        self.body_reads = Gauge(
            "almbridge_body_reads",
            "Request bodies being read before authentication now.",
            registry=r,
        )
        self.body_reads_cut = Counter(
            "almbridge_body_reads_cut",
            "Request bodies not read to the end: too slow (timeout), cut short to make room "
            "for newer requests (evicted), or refused because every read was young (busy).",
            ["outcome"],
            registry=r,
        )
        for outcome in BODY_READ_OUTCOMES:
            self.body_reads_cut.labels(outcome)
        self.unauthenticated_bytes = Gauge(
            "almbridge_unauthenticated_bytes",
            "Bytes held now for requests that have not authenticated (headers arriving, "
            "bodies read before verification, bodies inflated); at most "
            "BRIDGE_MAX_UNAUTHENTICATED_BYTES.",
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "almbridge_inflight_bytes",
            "Estimated memory of the authenticated batches in flight now; at most "
            "BRIDGE_MAX_INFLIGHT_BYTES.",
            registry=r,
        )
        self.connections_cut = Counter(
            "almbridge_connections_cut",
            "Connections closed while their request headers were arriving: too slow "
            "(header_timeout), too large (header_too_large), cut short to make room in the "
            "unauthenticated byte budget (evicted), or refused room in it (busy).",
            ["reason"],
            registry=r,
        )
        for cut in HEADER_CUTS:
            self.connections_cut.labels(cut)
        self.tls_reloads = Counter(
            "almbridge_tls_certificate_reloads",
            "Changes of the TLS certificate files: loaded (new connections get the new "
            "certificate) or refused (the previous one keeps serving).",
            ["result"],
            registry=r,
        )
        for result in RELOAD_RESULTS:
            self.tls_reloads.labels(result)
        self.tls_loaded = Gauge(
            "almbridge_tls_certificate_loaded_timestamp_seconds",
            "When the TLS certificate now served was loaded (0 without TLS).",
            registry=r,
        )
        self.config_reloads = Counter(
            "almbridge_config_reloads",
            "Reloads of the receivers' configuration and secrets (on a file change or "
            "SIGHUP): loaded, or refused as a whole (the running configuration keeps "
            "serving).",
            ["result"],
            registry=r,
        )
        for result in RELOAD_RESULTS:
            self.config_reloads.labels(result)
        self.config_generation = Gauge(
            "almbridge_config_generation",
            "Which configuration serves: 1 from the start, one more for each applied reload.",
            registry=r,
        )
        self.config_generation.set(1)
        self.config_last_reload_successful = Gauge(
            "almbridge_config_last_reload_successful",
            "1 when the last reload attempt was applied (or none was made), 0 when it was "
            "refused: the files now hold a configuration the bridge does not serve.",
            registry=r,
        )
        self.config_last_reload_successful.set(1)
        self.config_loaded = Gauge(
            "almbridge_config_last_reload_success_timestamp_seconds",
            "When the configuration that serves was loaded (the start, or the last reload).",
            registry=r,
        )
        self.config_loaded.set_to_current_time()
        self.last_publish = Gauge(
            "almbridge_last_publish_timestamp_seconds",
            "Unix time of the last batch Kafka fully acknowledged.",
            registry=r,
        )
        self.build_info = Gauge(
            "almbridge_build_info",
            "Build metadata; the value is always 1.",
            ["version", "python_version"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        # process_* (CPU seconds, resident memory, open file descriptors, start time),
        # python_gc_* and python_info, as the client's default registry has them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        # The children the request path looks up for every batch.
        self.http_requests_by = children(self.http_requests)
        self.request_duration_by = children(self.request_duration)
        self.batches_by = children(self.batches)
        self.events_published_by = children(self.events_published)
        for name in [*receivers, UNKNOWN_RECEIVER]:
            self.add_receiver(name)

    def add_receiver(self, receiver: str) -> None:
        """Every series of ``receiver`` at zero (at start, and for one a reload adds)."""
        for status_class in STATUS_CLASSES:
            self.http_requests.labels(receiver, status_class)
        self.request_duration.labels(receiver)
        if receiver == UNKNOWN_RECEIVER:
            return
        for outcome in OUTCOMES:
            self.batches.labels(receiver, outcome)
        for fam in FAMILIES:
            self.events_published.labels(receiver, fam)
            self.event_lag.labels(receiver, fam)
        for auth_reason in AUTH_REASONS:
            self.auth_failures.labels(receiver, auth_reason)
        self.duplicates.labels(receiver)
        self.events_joined.labels(receiver)
        self.fleet_suppressed.labels(receiver)
        self.fleet_entries_loaded.labels(receiver)
        for dead_letter_reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(receiver, dead_letter_reason)
        for fallback in FALLBACK_REASONS:
            self.topic_fallbacks.labels(receiver, fallback)
