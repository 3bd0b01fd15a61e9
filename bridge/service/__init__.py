"""The HTTP side: the aiohttp adapter, admission, handlers, ingestion, wiring."""
