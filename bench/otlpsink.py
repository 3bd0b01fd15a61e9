"""An OTLP/HTTP trace receiver that accepts and counts what it is sent: the collector of
``python -m bench.cores --tracing``, so that the bridge's exporter does all its work.

    python -m bench.otlpsink --port PORT

``GET /`` answers the number of spans received so far.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPANS = web.AppKey("spans", list[int])


async def traces(request: web.Request) -> web.Response:
    export = ExportTraceServiceRequest()
    export.ParseFromString(await request.read())
    count = sum(len(scope.spans) for rs in export.resource_spans for scope in rs.scope_spans)
    request.app[SPANS][0] += count
    return web.Response(body=b"", content_type="application/x-protobuf")


async def received(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[SPANS][0]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlpsink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app[SPANS] = [0]
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/", received)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
