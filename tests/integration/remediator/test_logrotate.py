"""The file source under Debian's real logrotate while a writer is writing: no line lost or read twice.

The tail runs as in the service: watchdog (inotify) events on the directory wake a reader thread
that polls the tail; the writer is a logging handler like the sync's own.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.remediator.sources.filetail import FileTail
from agent.remediator.sources.watcher import FileWatcher
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


class Rotations:
    def __init__(self) -> None:
        self.done = 0
        self.writer_done = threading.Event()
        self.reopen = threading.Event()


def write_lines(make_handler, rot: Rotations, minimum: int = 2000) -> int:
    """Write numbered lines until at least 4 rotations happened under them; the count.

    The writer reopens its file when told to, as a daemon does on logrotate's postrotate HUP.
    """
    logger = logging.getLogger(f"writer-{id(rot)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = make_handler()
    logger.addHandler(handler)
    i = 0
    while i < minimum or rot.done < 4:
        if rot.reopen.is_set():
            rot.reopen.clear()
            logger.removeHandler(handler)
            handler.close()
            handler = make_handler()
            logger.addHandler(handler)
        logger.info("[port-sheet] line %06d", i)
        i += 1
        if i % 20 == 0:
            time.sleep(0.002)
    rot.writer_done.set()
    handler.close()
    return i


def rotate_repeatedly(conf: Path, state: Path, rot: Rotations, reopen: bool) -> None:
    while not rot.writer_done.is_set():
        time.sleep(0.1)
        subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True)
        if reopen:
            rot.reopen.set()  # postrotate: tell the writer to reopen its log
        rot.done += 1


def run_scenario(log: Path, conf: Path, state: Path, make_handler, reopen: bool) -> tuple[int, int]:
    rot = Rotations()
    written: list[int] = []
    writer = threading.Thread(target=lambda: written.append(write_lines(make_handler, rot)))
    writer.start()
    try:
        rotate_repeatedly(conf, state, rot, reopen)
    finally:
        rot.writer_done.set()
        writer.join()
    return written[0], rot.done


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


def rotated_while_read(tmp_path: Path, mode: str, reopen: bool) -> tuple[Path, Reader, int, int]:
    """Logrotate ``mode`` rotating a FileHandler's log under a Reader; the reader is stopped.

    Returns the log directory, the reader, the lines written and the rotations made.
    """
    d, log, conf = setup(tmp_path, mode)
    reader = Reader(log, StateDB()).start()
    time.sleep(0.2)
    n, rotations = run_scenario(
        log, conf, tmp_path / "state", lambda: logging.FileHandler(log), reopen=reopen
    )
    reader.stop()
    return d, reader, n, rotations


def test_logrotate_create_loses_and_duplicates_nothing(tmp_path: Path):
    # Lines written between the rename and the writer's reopen land in the rotated file.
    d, reader, n, rotations = rotated_while_read(tmp_path, "create 0640", reopen=True)
    assert rotations >= 4 and len(list(d.iterdir())) >= 4
    got = numbers(reader.lines)
    assert len(got) == len(set(got)), "a line was read twice"
    # Every line, each once. (Across a rotation a line the writer still put in the old file may
    # be read just after one it already put in the new file: two files have no common order.)
    assert sorted(got) == list(range(n))
    assert reader.tail.stats.rotations >= 3


def test_logrotate_copytruncate_reads_every_line_on_disk_once_in_order(tmp_path: Path):
    # FileHandler opens with O_APPEND: after a truncate it writes at the new end.
    d, reader, n, rotations = rotated_while_read(tmp_path, "copytruncate", reopen=False)
    assert rotations >= 4 and reader.tail.stats.truncations >= 1
    got = numbers(reader.lines)
    assert len(got) == len(set(got)), "a line was read twice"
    assert got == sorted(got), "lines out of order"
    disk = set(numbers(on_disk(d)))
    # copytruncate itself drops lines written between its copy and its truncate; the tail must
    # have every line that is on disk (and may have read some of those dropped ones in time).
    assert disk - set(got) == set()
    assert set(got) <= set(range(n))
