"""The file source under Debian's real logrotate while a writer is writing: no line lost or read twice.

The tail runs as in the service: watchdog (inotify) events on the directory wake a reader thread
that polls the tail; the writer is a logging handler like the sync's own.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.remediator.sources import FileTail, FileWatcher
from agent.remediator.state import StateDB

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
pytestmark = pytest.mark.skipif(not Path(LOGROTATE).exists(), reason="logrotate is not installed")


class Reader:
    def __init__(self, path: Path, state: StateDB):
        self.tail = FileTail(str(path), state)
        self.lines: list[bytes] = []
        self.q: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.watcher = FileWatcher(self.q.put)
        self.watcher.set_paths([str(path)])
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sink(self, buf: bytes | bytearray, end: int) -> None:
        self.lines.extend(bytes(buf[:end]).split(b"\n")[:-1])

    def run(self) -> None:
        self.tail.poll(self.sink)
        while self.q.get() is not None:
            self.tail.poll(self.sink)

    def start(self) -> Reader:
        self.thread.start()
        self.watcher.start()
        return self

    def stop(self) -> None:
        time.sleep(0.3)
        self.q.put("final")
        self.q.put(None)
        self.thread.join(5)
        self.watcher.stop()


def write_lines(handler: logging.Handler, n: int, stop_rotating: threading.Event) -> None:
    logger = logging.getLogger(f"writer-{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for i in range(n):
        logger.info("[port-sheet] line %06d", i)
        if i % 20 == 0:
            time.sleep(0.002)
    stop_rotating.set()
    handler.close()


def rotate_repeatedly(conf: Path, state: Path, stop: threading.Event) -> int:
    n = 0
    while not stop.is_set():
        time.sleep(0.15)
        done = subprocess.run(
            [LOGROTATE, "-f", "-s", str(state), str(conf)], capture_output=True, text=True
        )
        # `create` races the writer: if the writer reopened the path first, logrotate's own
        # create fails with "File exists" after its rename. The rotation still happened.
        assert done.returncode == 0 or "exists" in done.stderr, done.stderr
        n += 1
    return n


def setup(tmp_path: Path, mode: str) -> tuple[Path, Path, Path]:
    d = tmp_path / "log"
    d.mkdir(mode=0o755)
    log = d / "port-sheet-sync.log"
    log.write_text("")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    {mode}\n    rotate 1000\n    missingok\n    nocompress\n}}\n")
    conf.chmod(0o644)
    return d, log, conf


def on_disk(d: Path) -> list[bytes]:
    out: list[bytes] = []
    for p in d.iterdir():
        out.extend(x for x in p.read_bytes().split(b"\n") if x)
    return out


def numbers(lines: list[bytes]) -> list[int]:
    return [int(x.rsplit(b" ", 1)[1]) for x in lines]


def test_logrotate_create_loses_and_duplicates_nothing(tmp_path: Path):
    d, log, conf = setup(tmp_path, "create 0640")
    reader = Reader(log, StateDB()).start()
    time.sleep(0.2)
    stop = threading.Event()
    # WatchedFileHandler reopens the path when its inode changes, as a logger should after `create`.
    handler = logging.handlers.WatchedFileHandler(log)
    writer = threading.Thread(target=write_lines, args=(handler, 4000, stop))
    writer.start()
    rotations = rotate_repeatedly(conf, tmp_path / "state", stop)
    writer.join()
    reader.stop()
    assert rotations >= 3
    assert len(list(d.iterdir())) >= 4
    got = numbers(reader.lines)
    assert got == list(range(4000))
    assert reader.tail.stats.rotations >= rotations - 1


def test_logrotate_copytruncate_reads_every_line_on_disk_once_in_order(tmp_path: Path):
    d, log, conf = setup(tmp_path, "copytruncate")
    reader = Reader(log, StateDB()).start()
    time.sleep(0.2)
    stop = threading.Event()
    handler = logging.FileHandler(log)  # O_APPEND: after a truncate it writes at the new end
    writer = threading.Thread(target=write_lines, args=(handler, 4000, stop))
    writer.start()
    rotations = rotate_repeatedly(conf, tmp_path / "state", stop)
    writer.join()
    reader.stop()
    assert rotations >= 3 and reader.tail.stats.truncations >= 1
    got = numbers(reader.lines)
    assert len(got) == len(set(got)), "a line was read twice"
    assert got == sorted(got), "lines out of order"
    disk = set(numbers(on_disk(d)))
    # copytruncate itself drops lines written between its copy and its truncate; the tail must
    # have every line that is on disk (and may have read some of those dropped ones in time).
    assert disk - set(got) == set()
    assert set(got) <= set(range(4000))
