"""A folder kept as the kubelet keeps a mounted Secret or ConfigMap: every name points
through a ``..data`` symlink, and an update writes a new version folder and swaps the
symlink at once. Shared by the tests of live reload and of HTTPS renewals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class Mount:
    def __init__(self, folder: Path, files: Mapping[str, bytes | str] | None = None) -> None:
        self.folder = folder
        self.versions = 0
        folder.mkdir(parents=True)
        if files is not None:
            self.publish(files)

    def __truediv__(self, name: str) -> Path:
        return self.folder / name

    def publish(self, files: Mapping[str, bytes | str]) -> None:
        """A new version holding exactly ``files``, made visible in one swap."""
        self.versions += 1
        version = self.folder / f"..v{self.versions}"
        version.mkdir()
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            (version / name).write_bytes(data)
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        swap = self.folder / "..data.new"
        swap.symlink_to(version.name)
        os.replace(swap, self.folder / "..data")
        for stale in self.folder.iterdir():
            if stale.is_symlink() and not stale.name.startswith("..") and stale.name not in files:
                stale.unlink()
