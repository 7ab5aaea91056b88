"""Line sources, one backend a module (as fail2ban lays out its backends).

- :mod:`.filetail`: one log file tailed in the manner of fail2ban (rotation, copytruncate,
  restart at the saved position, regular files only).
- :mod:`.watcher`: watchdog (inotify) on the tailed files' directories; its events name the
  files to read.
- :mod:`.journald`: the systemd journal through one ``journalctl -f -o json`` child.

The matcher that picks, in what they read, the lines the rules must look at lives in
:mod:`agent.remediator.matcher` (its byte prefilter in :mod:`agent.remediator.fastpath`); a
journal entry is parsed by the shared reader :mod:`agent.journal`. Nothing polls: watchdog's
observer thread and the journal's reader thread block, and hand what they saw to the service's
core over its queue.
"""

from __future__ import annotations

from collections.abc import Callable

# A source reports trouble with a message (keyed by the source), and its end with None.
FaultHook = Callable[[str, str | None], None]
