"""alm-kafka-bridge: Adobe Learning Manager webhooks republished to Kafka."""

from __future__ import annotations

__all__ = ["__version__", "main"]

# Read from the installed package on first use (see __getattr__): importing
# importlib.metadata takes a fifth of a second, during which `main` could not yet turn a
# Ctrl-C into a quiet exit.
__version__: str


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("alm-kafka-bridge")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found


def main() -> None:
    """The ``alm-bridge`` command; a Ctrl-C while it is still loading exits quietly (130)."""
    try:
        from bridge.cli.main import main as command_line

        command_line()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
