"""A real Prometheus for the tests: started on a free port, stopped by its process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path


@contextlib.asynccontextmanager
async def running_prometheus(
    binary: str | Path, port: int, folder: Path, target: str, *, rule_files: Sequence[Path] = ()
) -> AsyncIterator[str]:
    """A real Prometheus scraping ``target`` every second (and evaluating ``rule_files``),
    stopped by its process; yields its URL."""
    config = folder / "prometheus.yml"
    rules = f"rule_files: {[str(p) for p in rule_files]}\n" if rule_files else ""
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n" + rules + "scrape_configs:\n"
        "  - job_name: alm-kafka-bridge\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    with (folder / "prometheus.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
