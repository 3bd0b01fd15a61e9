"""The HTTP ceiling: the bridge's web stack (aiohttp, uvloop) reading the body, no Kafka.

    python -m bench.httpceiling --port N

POST /webhooks/{receiver} reads the whole body and answers 200 with a body shaped like the
bridge's; GET /healthz answers 200. Nothing is verified, parsed, logged or published, so the
bridge can never be faster than this on the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import orjson
from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    events = body.count(b'"eventId"')
    answer = {"received": events, "published": events, "duplicates": 0, "deadLettered": 0}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application(handler_args={"max_field_size": 16384})
    app.router.add_post("/webhooks/{receiver}", receive)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.httpceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
