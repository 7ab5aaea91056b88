"""Reading one large saved journal with one process per core.

The file is cut into byte ranges that start at a line; each worker (forked: it inherits the
imported modules) analyses its range as a part of the journal that *continues* the one before,
and the parts are merged in order (:meth:`agent.health.analysis.JournalAnalysis.merge`). Small
or compressed files are read by one process.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

from agent.health.analysis import JournalAnalysis
from agent.health.readers import JournalError, iter_json, iter_short_iso, open_journal

# Below this size one process reads the file; above it, one process per core reads a part.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def _analyse_part(
    path: str, start: int, end: int, bucket_s: int, since: float | None
) -> JournalAnalysis:
    analysis = JournalAnalysis(bucket_s=bucket_s, since=since, continues=start > 0)
    with open(path, "rb") as fh:
        fh.seek(start)
        head = fh.read(1)
        fh.seek(start)

        def lines() -> Iterator[bytes]:
            remaining = end - start
            for line in fh:
                yield line
                remaining -= len(line)
                if remaining <= 0:
                    return

        name = f"{path} (part from byte {start})"
        source = iter_json(lines(), name) if head == b"{" else iter_short_iso(lines(), name)
        analysis.feed(source)
    return analysis  # pickled back without its caches (JournalAnalysis.__getstate__)


def _split(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of about equal size, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as fh:
        for i in range(1, parts):
            fh.seek(size * i // parts)
            fh.readline()  # finish the line we landed in
            pos = fh.tell()
            if pos > cuts[-1] and pos < size:
                cuts.append(pos)
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def analyse_path(
    path: str | Path, bucket_s: int = 600, since: float | None = None, workers: int | None = None
) -> JournalAnalysis:
    """Analyse a saved journal, reading a large uncompressed file with one process per core."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal file ({exc.strerror})") from None
    workers = workers or min(4, os.cpu_count() or 1)
    if p.suffix == ".gz" or workers < 2 or size < PARALLEL_MIN_BYTES:
        return JournalAnalysis(bucket_s=bucket_s, since=since).feed(open_journal(p))
    ranges = _split(p, workers)
    # fork: the workers inherit the imported modules instead of importing them again.
    with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
        parts = pool.starmap(_analyse_part, [(str(p), a, b, bucket_s, since) for a, b in ranges])
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged
