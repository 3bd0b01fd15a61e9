"""alm-kafka-bridge: Adobe Learning Manager webhooks republished to Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alm-kafka-bridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
