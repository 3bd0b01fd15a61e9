"""Noticing that files changed, the way Kubernetes changes mounted Secrets and ConfigMaps.

The kubelet never rewrites a mounted file: it writes a new version folder and swaps the
``..data`` symlink the file names point through, so a name resolves to another file while
it stays the same. A file's identity is therefore its resolved path with its inode, time
and size: a swap, a rewrite in place and a replacement (``mv``) each change it. Nothing is
read to tell: a check is one ``stat`` per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Identity = tuple[str, int, int, int] | None


def identity(path: Path) -> Identity:
    """What changes when ``path`` is replaced, rewritten or re-pointed; None when missing."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return None
    return (real, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def identities(paths: Iterable[Path]) -> tuple[tuple[str, Identity], ...]:
    """The identity of each path, in a stable order (comparable between checks)."""
    return tuple((name, identity(Path(name))) for name in sorted({str(path) for path in paths}))
