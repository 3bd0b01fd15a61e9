"""alm-kafka-bridge: Adobe Learning Manager webhooks republished to Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alm-kafka-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "main"]


def main() -> None:
    """The ``alm-bridge`` command; a Ctrl-C while it is still loading exits quietly (130)."""
    try:
        from bridge.__main__ import main as command_line

        command_line()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
