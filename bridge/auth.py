"""Sans-I/O authentication of ALM requests: none, HTTP Basic, HMAC over the raw body.

Every verifier works on header values and the raw body bytes only, never on a parsed
body, and compares in constant time. Failures raise :class:`AuthError` with a closed
reason code (``missing``, ``malformed``, ``mismatch``) that is safe to put in a metric.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, get_args

import orjson

from bridge.errors import AuthError

# The one list of HMAC hashes and digest encodings; settings, the sender's options and the
# tests take theirs from here.
Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)
DEFAULT_ALGORITHM: Final[Algorithm] = "sha256"
DEFAULT_ENCODING: Final[Encoding] = "hex"
# The header ALM's "Signature" method is assumed to use unless a receiver says otherwise.
DEFAULT_HMAC_HEADER: Final = "X-ALM-Signature"
_PREFIX = re.compile(rf"^\s*({'|'.join(ALGORITHMS)})\s*=\s*(.*)$", re.IGNORECASE | re.DOTALL)
# Field names tried, in order, when a secret file is a JSON object with several strings.
_SECRET_FIELDS: Final = (
    "signingSecret",
    "signing_secret",
    "secret",
    "webhookSecret",
    "webhook_secret",
    "hmacSecret",
    "hmac_secret",
    "key",
    "value",
)


class Verifier(Protocol):
    """Checks one request; ``precheck`` runs before the body is read."""

    @property
    def needs_body(self) -> bool: ...

    def precheck(self, headers: Mapping[str, str]) -> None: ...

    def verify(self, headers: Mapping[str, str], body: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class NoAuth:
    """Accepts every request (for receivers behind another authenticating layer)."""

    @property
    def needs_body(self) -> bool:
        return False

    def precheck(self, headers: Mapping[str, str]) -> None:
        return None

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        return None


def _credential_digest(username: str, password: str) -> bytes:
    # Hashing first gives equal-length inputs to compare_digest whatever the lengths.
    return hashlib.sha256(f"{username}\x00{password}".encode()).digest()


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP Basic with one or more accepted username/password pairs."""

    credentials: Sequence[tuple[str, str]] = field(repr=False)
    _digests: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        digests = tuple(_credential_digest(u, p) for u, p in self.credentials)
        object.__setattr__(self, "_digests", digests)

    @property
    def needs_body(self) -> bool:
        return False

    def precheck(self, headers: Mapping[str, str]) -> None:
        value = headers.get("Authorization")
        if not value:
            raise AuthError("missing", "no Authorization header")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            raise AuthError("malformed", "Authorization is not Basic")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII tokens
            raise AuthError("malformed", "Basic credentials are not base64 of UTF-8") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError("malformed", "Basic credentials have no ':'")
        given = _credential_digest(username, password)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        if not matched:
            raise AuthError("mismatch", "unknown username or wrong password")

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HmacAuth:
    """HMAC of the raw body, with several secrets accepted at once for rotation."""

    secrets: Sequence[bytes] = field(repr=False)
    header: str = DEFAULT_HMAC_HEADER
    algorithm: Algorithm = DEFAULT_ALGORITHM
    encoding: Encoding = DEFAULT_ENCODING

    @property
    def needs_body(self) -> bool:
        return True

    def precheck(self, headers: Mapping[str, str]) -> None:
        """Everything that can be judged without the body: present, decodable, full length.

        A request that fails here is answered without its body being read.
        """
        value = headers.get(self.header, "")
        if not value.strip():
            raise AuthError("missing", f"no {self.header} header")
        size = len(self._decode(value))
        expected = hashlib.new(self.algorithm).digest_size
        if size != expected:
            raise AuthError(
                "malformed", f"signature has {size} bytes, an HMAC-{self.algorithm} has {expected}"
            )

    def _decode(self, value: str) -> bytes:
        text = value.strip()
        prefixed = _PREFIX.match(text)
        if prefixed is not None:
            if prefixed.group(1).lower() != self.algorithm:
                raise AuthError("malformed", "signature prefix names another algorithm")
            text = prefixed.group(2).strip()
        if not text:
            raise AuthError("malformed", "signature is empty")
        try:
            if self.encoding == "hex":
                return bytes.fromhex(text)
            return base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise AuthError("malformed", f"signature is not {self.encoding}") from None

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        value = headers.get(self.header, "")
        if not value.strip():
            raise AuthError("missing", f"no {self.header} header")
        given = self._decode(value)
        matched = False
        for secret in self.secrets:
            expected = hmac.new(secret, body, self.algorithm).digest()
            matched |= hmac.compare_digest(given, expected)
        if not matched:
            raise AuthError("mismatch", "signature does not match the body")


def sign_hmac(
    body: bytes,
    secret: bytes,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    encoding: str = DEFAULT_ENCODING,
    prefix: bool = False,
) -> str:
    """The signature header value a receiver configured with these options accepts."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    digest = hmac.new(secret, body, algorithm).digest()
    if encoding == "hex":
        text = digest.hex()
    elif encoding == "base64":
        text = base64.b64encode(digest).decode("ascii")
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    return f"{algorithm}={text}" if prefix else text


def basic_authorization(username: str, password: str) -> str:
    """The full ``Authorization`` header value for HTTP Basic."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def secret_from_text(text: str) -> bytes:
    """A signing secret from a file's or variable's text.

    ALM lets the admin download the secret as a JSON file whose exact shape is not
    published, so accept: a JSON object with a single string value, a JSON object with a
    well-known field name, a JSON string, or plain text.
    """
    stripped = text.lstrip("\ufeff").strip()
    if not stripped:
        raise ValueError("the secret is empty")
    if stripped[0] in '{"':
        try:
            parsed = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return stripped.encode()
        return _secret_from_json(parsed)
    return stripped.encode()


def _secret_from_json(parsed: object) -> bytes:
    if isinstance(parsed, str) and parsed.strip():
        return parsed.strip().encode()
    if isinstance(parsed, dict):
        strings = {k: v for k, v in parsed.items() if isinstance(v, str) and v.strip()}
        if len(strings) == 1:
            return next(iter(strings.values())).strip().encode()
        lowered = {k.lower(): v for k, v in strings.items()}
        for name in _SECRET_FIELDS:
            if name.lower() in lowered:
                return lowered[name.lower()].strip().encode()
        raise ValueError(
            "the JSON secret file has no single string value and none of the fields "
            + ", ".join(_SECRET_FIELDS)
        )
    raise ValueError("the JSON secret file is neither an object nor a string")
