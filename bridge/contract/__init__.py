"""The consumers' contract: an AsyncAPI 3.0 document of what the bridge publishes.

Built from the effective routing configuration, with no I/O: one channel per topic (the
template, overrides, the catch-all and the dead-letter topic), the record key and how it
is built, the CloudEvents and ``alm_*`` headers, and one message per event family whose
JSON Schema accepts both payload dialects ALM sends. ``alm-bridge asyncapi`` prints it;
``docs/asyncapi.yaml`` is the copy for the defaults, and :func:`render_markdown` turns it
into the page in ``docs/asyncapi.md``.

Extensions (allowed by AsyncAPI on messages): ``x-alm-key`` lists, per receiver, the key
strategy and the templates tried in order — the first whose fields are all present ids in
the event's ``data`` (or ``eventData``) builds the key — so consumers and the tests can
check a key against its value.

Modules: :mod:`.model` (families, channels), :mod:`.schemas` (payloads, headers, keys,
examples), :mod:`.document` (the document), :mod:`.render` (YAML, JSON, Markdown).
"""

from bridge.contract.document import build_document
from bridge.contract.model import (
    CE_TYPE_PREFIX,
    DEAD_LETTERED_BATCH,
    DEAD_LETTERED_EVENT,
    FAMILIES,
)
from bridge.contract.render import (
    FORMATS,
    render,
    render_json,
    render_markdown,
    render_yaml,
    sample_bodies,
)

__all__ = [
    "CE_TYPE_PREFIX",
    "DEAD_LETTERED_BATCH",
    "DEAD_LETTERED_EVENT",
    "FAMILIES",
    "FORMATS",
    "build_document",
    "render",
    "render_json",
    "render_markdown",
    "render_yaml",
    "sample_bodies",
]
