"""The bridge's exceptions: one base, a few narrow subclasses, each mapped to one outcome."""

from __future__ import annotations

from bridge.core.reasons import AuthReason, DeadLetterReason, ErrorCode


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    code: str = "bridge_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class ConfigError(BridgeError):
    """The configuration is invalid; the process must not start."""

    code = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class AuthError(BridgeError):
    """The request did not prove it comes from ALM; reason is a short closed code."""

    code = "unauthorized"

    def __init__(self, reason: AuthReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class InvalidBatch(BridgeError):
    """The body authenticated but is not a batch the bridge can ever accept: ``code`` is
    the body's error code (dead-lettered as the reason), or ``invalid_challenge``."""

    code: DeadLetterReason | ErrorCode

    def __init__(self, detail: str, *, code: DeadLetterReason | ErrorCode) -> None:
        super().__init__(detail, code=code)


class AccountNotAccepted(BridgeError):
    """The batch's accountId is not one this receiver accepts."""

    code = ErrorCode.ACCOUNT_NOT_ACCEPTED


class PublishUnavailable(BridgeError):
    """Kafka did not acknowledge every record within the deadline."""

    code: ErrorCode = ErrorCode.KAFKA_UNAVAILABLE

    def __init__(self, detail: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(detail, code=code)


class KafkaStartError(BridgeError):
    """The cluster refused the bridge's credentials or certificate: retrying will not help."""

    code = "kafka_start_failed"


class KafkaTopicRefused(KafkaStartError):
    """A topic the bridge needs at start cannot serve (e.g. the fleet topic is not
    compacted, or not readable); the detail is one line naming the setting."""

    code = "kafka_topic_refused"


class StartupError(BridgeError):
    """The process cannot start (e.g. its port is taken); the detail is one line for operators."""

    code = "startup_failed"
