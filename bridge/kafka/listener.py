"""Which security protocol a Kafka listener speaks, asked directly, to explain a failed start.

aiokafka reports a client whose ``security_protocol`` does not match the listener with
errors that name neither: a TLS handshake against a plaintext listener is reset
(``ConnectionResetError``, often with an empty message), SASL against a listener without it
answers ``IllegalSaslStateError``, plaintext against a TLS listener sees the connection
closed. Retrying never helps, so the bridge would stay unready for ever.

:func:`identify` asks the listener itself with two short exchanges: Kafka's ``ApiVersions``
in plain text (a Kafka listener without TLS answers it), then the same over TLS without
verifying the certificate (only the protocol is of interest here); ``SaslHandshake`` then
tells a SASL listener (which lists its mechanisms) from one without SASL
(``ILLEGAL_SASL_STATE``). Only a listener that answered like Kafka counts: one that refuses
connections, times out or answers nothing recognisable gives ``None``, and the caller keeps
retrying as for an unreachable cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from dataclasses import dataclass
from typing import Final

_API_VERSIONS: Final = 18
_SASL_HANDSHAKE: Final = 17
_ILLEGAL_SASL_STATE: Final = 34
_UNSUPPORTED_SASL_MECHANISM: Final = 33
_CLIENT_ID: Final = b"alm-kafka-bridge-probe"
# A Kafka answer to these two requests is small; anything larger is not Kafka speaking.
_MAX_ANSWER: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Listener:
    """What a listener answered: its security protocol and, with SASL, its mechanisms."""

    protocol: str
    mechanisms: tuple[str, ...] = ()


def _frame(api_key: int, api_version: int, correlation_id: int, body: bytes = b"") -> bytes:
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(_CLIENT_ID))
    message = header + _CLIENT_ID + body
    return struct.pack(">i", len(message)) + message


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: bytes
) -> bytes | None:
    writer.write(frame)
    await writer.drain()
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 4 <= size <= _MAX_ANSWER:
        return None
    return await reader.readexactly(size)


async def _speaks_kafka(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, ...] | None:
    """``None`` if the peer did not answer like Kafka; else its SASL mechanisms (or none)."""
    answer = await _exchange(reader, writer, _frame(_API_VERSIONS, 0, 1))
    if answer is None or len(answer) < 6 or struct.unpack_from(">i", answer)[0] != 1:
        return None
    mechanism = b"PLAIN"
    body = struct.pack(">h", len(mechanism)) + mechanism
    answer = await _exchange(reader, writer, _frame(_SASL_HANDSHAKE, 1, 2, body))
    if answer is None or len(answer) < 6:
        return None
    correlation_id, error_code = struct.unpack_from(">ih", answer)
    if correlation_id != 2:
        return None
    if error_code == _ILLEGAL_SASL_STATE:
        return ()
    if error_code not in (0, _UNSUPPORTED_SASL_MECHANISM):
        return None
    return _mechanisms(answer[6:]) or ("(unnamed)",)


def _mechanisms(data: bytes) -> tuple[str, ...]:
    try:
        (count,) = struct.unpack_from(">i", data)
        offset, names = 4, []
        for _ in range(max(0, min(count, 32))):
            (length,) = struct.unpack_from(">h", data, offset)
            offset += 2
            names.append(data[offset : offset + length].decode("utf-8", "replace"))
            offset += length
    except struct.error:
        return ()
    return tuple(names)


async def _ask(
    host: str, port: int, tls: ssl.SSLContext | None, timeout_seconds: float
) -> tuple[str, ...] | None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
            return await _speaks_kafka(reader, writer)
    except (OSError, EOFError, TimeoutError, struct.error, ssl.SSLError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await writer.wait_closed()


def _any_certificate() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def identify(host: str, port: int, *, timeout_seconds: float = 2.0) -> Listener | None:
    """The protocol ``host:port`` answered with, or ``None`` if it did not answer like Kafka.

    Each of the two attempts (plain text, then TLS) is bounded by ``timeout_seconds``.
    """
    mechanisms = await _ask(host, port, None, timeout_seconds)
    if mechanisms is not None:
        return Listener("SASL_PLAINTEXT" if mechanisms else "PLAINTEXT", mechanisms)
    mechanisms = await _ask(host, port, _any_certificate(), timeout_seconds)
    if mechanisms is not None:
        return Listener("SASL_SSL" if mechanisms else "SSL", mechanisms)
    return None


def first_server(bootstrap_servers: str) -> tuple[str, int]:
    """The host and port of the first ``host:port`` in a bootstrap list (IPv6 in brackets)."""
    first = bootstrap_servers.split(",")[0].strip()
    host, colon, port = first.rpartition(":")
    if not colon or host.endswith(":"):  # no port: aiokafka's default
        return first.strip("[]"), 9092
    return host.strip("[]"), int(port)
