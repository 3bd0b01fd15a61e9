"""Sans-I/O authentication of ALM requests: none, HTTP Basic, HMAC over the raw body.

Every verifier works on header values and the raw body bytes only, never on a parsed
body, and compares in constant time. Failures raise :class:`AuthError` with a closed
reason code (:class:`bridge.core.reasons.AuthReason`) that is safe to put in a metric.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, get_args

import orjson

from bridge.core.errors import AuthError
from bridge.core.reasons import AuthReason

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
            raise AuthError(AuthReason.MISSING, "no Authorization header")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            raise AuthError(AuthReason.MALFORMED, "Authorization is not Basic")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII tokens
            raise AuthError(
                AuthReason.MALFORMED, "Basic credentials are not base64 of UTF-8"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(AuthReason.MALFORMED, "Basic credentials have no ':'")
        given = _credential_digest(username, password)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        if not matched:
            raise AuthError(AuthReason.MISMATCH, "unknown username or wrong password")

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
            raise AuthError(AuthReason.MISSING, f"no {self.header} header")
        size = len(self._decode(value))
        expected = hashlib.new(self.algorithm).digest_size
        if size != expected:
            raise AuthError(
                AuthReason.MALFORMED,
                f"signature has {size} bytes, an HMAC-{self.algorithm} has {expected}",
            )

    def _decode(self, value: str) -> bytes:
        text = value.strip()
        prefixed = _PREFIX.match(text)
        if prefixed is not None:
            if prefixed.group(1).lower() != self.algorithm:
                raise AuthError(AuthReason.MALFORMED, "signature prefix names another algorithm")
            text = prefixed.group(2).strip()
        if not text:
            raise AuthError(AuthReason.MALFORMED, "signature is empty")
        try:
            if self.encoding == "hex":
                return bytes.fromhex(text)
            return base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise AuthError(AuthReason.MALFORMED, f"signature is not {self.encoding}") from None

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        value = headers.get(self.header, "")
        if not value.strip():
            raise AuthError(AuthReason.MISSING, f"no {self.header} header")
        given = self._decode(value)
        matched = False
        for secret in self.secrets:
            expected = hmac.new(secret, body, self.algorithm).digest()
            matched |= hmac.compare_digest(given, expected)
        if not matched:
            raise AuthError(AuthReason.MISMATCH, "signature does not match the body")


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


# -- First-delivery diagnosis -------------------------------------------------------------
# Headers that never carry a webhook signature: not tried as candidates.
_NOT_SIGNATURES: Final = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Connection",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "Cookie",
        "Date",
        "Expect",
        "Host",
        "Origin",
        "Referer",
        "Traceparent",
        "Tracestate",
        "Transfer-Encoding",
        "User-Agent",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Proto",
        "X-Real-Ip",
        "X-Request-Id",
    )
)
# Bounds on what a stranger's request can make the diagnosis do.
MAX_DIAGNOSED_HEADERS: Final = 64
_MAX_SIGNATURE_CHARS: Final = 256
_NAME_PREFIX = re.compile(r"^\s*([A-Za-z0-9_.-]{1,32})\s*=\s*(\S.*)$", re.DOTALL)
_DIGEST_SIZES: Final = {hashlib.new(a).digest_size: a for a in ALGORITHMS}


@dataclass(frozen=True, slots=True)
class SignatureMatch:
    """A header whose value is the HMAC of the body with a configured secret."""

    header: str
    algorithm: Algorithm
    encoding: Encoding
    prefix: str | None  # e.g. "sha256" for ``sha256=<digest>``; None when bare


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why an HMAC receiver refused a request, in words an operator can act on.

    Never holds a header's value or a secret: header names, and what to set.
    """

    header_names: tuple[str, ...]
    matches: tuple[SignatureMatch, ...]
    # Headers whose value decodes to a digest of a supported size but that match no secret.
    lookalikes: tuple[tuple[str, Algorithm, Encoding], ...]
    hint: str


def _decodings(value: str) -> list[tuple[str | None, Encoding, bytes]]:
    """Every way ``value`` reads as a digest: (prefix, encoding, bytes) of supported sizes."""
    text = value.strip()
    if not text or len(text) > _MAX_SIGNATURE_CHARS:
        return []
    forms: list[tuple[str | None, str]] = [(None, text)]
    prefixed = _NAME_PREFIX.match(text)
    if prefixed is not None:
        forms.append((prefixed.group(1), prefixed.group(2).strip()))
    found: list[tuple[str | None, Encoding, bytes]] = []
    for prefix, digest_text in forms:
        for encoding in ENCODINGS:
            try:
                if encoding == "hex":
                    raw = bytes.fromhex(digest_text)
                else:
                    raw = base64.b64decode(digest_text, validate=True)
            except (ValueError, binascii.Error):
                continue
            if len(raw) in _DIGEST_SIZES:
                found.append((prefix, encoding, raw))
    return found


def _changes(match: SignatureMatch, configured: HmacAuth) -> list[tuple[str, str, str]]:
    """(environment variable, YAML field, value) to set so ``configured`` accepts ``match``."""
    changes: list[tuple[str, str, str]] = []
    if match.header.lower() != configured.header.lower():
        changes.append(("BRIDGE_HMAC_HEADER", "header", match.header))
    if match.algorithm != configured.algorithm:
        changes.append(("BRIDGE_HMAC_ALGORITHM", "algorithm", match.algorithm))
    if match.encoding != configured.encoding:
        changes.append(("BRIDGE_HMAC_ENCODING", "encoding", match.encoding))
    return changes


def _match_hint(match: SignatureMatch, configured: HmacAuth) -> str:
    form = f"{match.algorithm}/{match.encoding}"
    if match.prefix is not None:
        form += f" after a '{match.prefix}=' prefix"
    hint = f"header {match.header} verifies with {form}"
    if match.prefix is not None and match.prefix.lower() != match.algorithm:
        return hint + (
            f"; the bridge reads only a prefix that names the algorithm ({match.algorithm}=),"
            " not this one"
        )
    changes = _changes(match, configured)
    if not changes:
        return hint + "; the configuration already says so"
    env = " ".join(f"{variable}={value}" for variable, _, value in changes)
    yaml = ", ".join(f"{field_name}: {value}" for _, field_name, value in changes)
    return f"{hint}; set {env} (or auth: {{{yaml}}} in the receiver's YAML)"


def diagnose_hmac(
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    verifier: HmacAuth,
) -> Diagnosis:
    """Which header would verify ``body`` with the receiver's secrets, and how.

    Tries every header that is not a well-known non-signature one (at most
    :data:`MAX_DIAGNOSED_HEADERS`), bare or after a ``name=`` prefix, as hex and base64, with
    sha1, sha256 and sha512 (the digest's size says which). Costs one HMAC of the body per
    secret and algorithm whose size a candidate has. ``body`` None: the body was not read,
    only the header names are told.
    """
    names: list[str] = []
    candidates: list[tuple[str, str | None, Encoding, bytes]] = []
    for name, value in headers:
        if len(names) >= MAX_DIAGNOSED_HEADERS:
            break
        if name not in names:
            names.append(name)
        if name.lower() in _NOT_SIGNATURES or name.lower() == "authorization":
            continue
        for prefix, encoding, raw in _decodings(value):
            candidates.append((name, prefix, encoding, raw))
    if body is None:
        hint = (
            "the body was not read, so no header was checked against the secret; "
            "capture the request and run alm-bridge diagnose"
        )
        return Diagnosis(tuple(names), (), (), hint)
    digests: dict[Algorithm, list[bytes]] = {}
    matches: list[SignatureMatch] = []
    lookalikes: list[tuple[str, Algorithm, Encoding]] = []
    for name, prefix, encoding, raw in candidates:
        algorithm = _DIGEST_SIZES[len(raw)]
        if algorithm not in digests:
            digests[algorithm] = [hmac.new(s, body, algorithm).digest() for s in verifier.secrets]
        matched = False
        for expected in digests[algorithm]:
            matched |= hmac.compare_digest(raw, expected)
        if matched:
            match = SignatureMatch(name, algorithm, encoding, prefix)
            if match not in matches:
                matches.append(match)
        elif (name, algorithm, encoding) not in lookalikes:
            lookalikes.append((name, algorithm, encoding))
    if matches:
        hint = "; ".join(_match_hint(m, verifier) for m in matches[:3])
    elif lookalikes:
        shown = ", ".join(f"{n} ({a}/{e})" for n, a, e in lookalikes[:3])
        hint = (
            f"no header verifies with the configured secret; {shown} looks like a signature: "
            "check that the secret is the one ALM signs with (a JSON file from ALM: give the "
            "file itself) and that nothing between ALM and the bridge changes the body"
        )
    else:
        hint = (
            "no header holds a hex or base64 digest of sha1, sha256 or sha512: ALM sent no "
            "signature (is its signing method on?)"
        )
    return Diagnosis(tuple(names), tuple(matches), tuple(lookalikes), hint)
