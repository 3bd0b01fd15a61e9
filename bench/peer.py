"""The hand-written peer: what a team would write in an afternoon instead of the bridge.

    python -m bench.peer --port N --bootstrap HOST:PORT --secret S

aiohttp and aiokafka with their defaults (acks=all, idempotent), the standard library's json,
an HMAC-SHA256 check over the raw body, one ``send()`` per event to the bridge's topic for its
name, and a 200 once Kafka acknowledged them all; uvloop when installed, like the bridge. No
limits, no deadline, no dead letters, no metrics. The benchmark measures it next to the
bridge, in the same run and on the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer

NOT_TOPIC_CHARS = re.compile(r"[^a-z0-9._-]")


def make_app(bootstrap: str, secret: bytes) -> web.Application:
    producer: AIOKafkaProducer

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        nonlocal producer
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        yield
        await producer.stop()

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-ALM-Signature", ""), expected):
            return web.json_response({"error": "auth_mismatch"}, status=401)
        batch = json.loads(body)
        account = batch["accountId"]
        acks = []
        for event in batch["events"]:
            event["accountId"] = account
            topic = "alm." + NOT_TOPIC_CHARS.sub("_", str(event["eventName"]).lower())
            key = f"{account}:{event['eventId']}".encode()
            acks.append(await producer.send(topic, json.dumps(event).encode(), key=key))
        await asyncio.gather(*acks)
        n = len(acks)
        summary = {"received": n, "published": n, "duplicates": 0, "deadLettered": 0}
        return web.Response(text=json.dumps(summary, separators=(",", ":")))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/webhooks/{receiver}", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    app = make_app(args.bootstrap, args.secret.encode())
    loop: asyncio.AbstractEventLoop
    try:  # the bridge's event loop, so that the comparison is of the code, not the loop
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
