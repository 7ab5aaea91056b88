"""Watchdog (inotify) on the directories of the tailed files: its events name the files to read.

A directory that does not exist yet is retried by :meth:`FileWatcher.rescan` on the service's
housekeeping timer; nothing polls the files themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from watchdog.events import FileSystemEventHandler

__all__ = ["FileWatcher"]


class FileWatcher:
    """Watchdog (inotify) on the directories of the tailed files; events become ``notify(path)``."""

    def __init__(self, notify: Callable[[str], None]):
        from watchdog.observers import Observer

        self.notify = notify
        self.observer = Observer()
        self.observer.daemon = True
        self.by_dir: dict[str, set[str]] = {}
        self.watches: dict[str, Any] = {}
        self.missing: set[str] = set()

    def set_paths(self, paths: Iterable[str]) -> None:
        wanted: dict[str, set[str]] = {}
        for p in paths:
            wanted.setdefault(os.path.dirname(p), set()).add(p)
        for d in list(self.watches):
            if d not in wanted:
                self.observer.unschedule(self.watches.pop(d))
        self.by_dir = wanted
        self.missing = set()
        for d in wanted:
            if d in self.watches:
                continue
            if not os.path.isdir(d):
                self.missing.add(d)  # retried by rescan() on the service's housekeeping timer
                continue
            self.watches[d] = self.observer.schedule(_handler(self, d), d, recursive=False)

    def rescan(self) -> list[str]:
        """Start watching directories that have appeared since; return their files."""
        found = [d for d in self.missing if os.path.isdir(d)]
        for d in found:
            self.missing.discard(d)
            self.watches[d] = self.observer.schedule(_handler(self, d), d, recursive=False)
        return [p for d in found for p in self.by_dir.get(d, ())]

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


def _handler(watcher: FileWatcher, directory: str) -> FileSystemEventHandler:
    # Duck-typed: the observer calls only dispatch(), and watchdog stays a lazy import.
    return cast("FileSystemEventHandler", _Handler(watcher, directory))


class _Handler:
    """Any event in a watched directory may concern its tails (a rename names the new path
    only as ``dest_path``; a rotated file is still drained), so all of them are notified."""

    def __init__(self, watcher: FileWatcher, directory: str):
        self.watcher = watcher
        self.directory = directory

    def dispatch(self, event: Any) -> None:
        if event.is_directory and event.src_path == self.directory:
            return
        for p in self.watcher.by_dir.get(self.directory, ()):
            self.watcher.notify(p)
