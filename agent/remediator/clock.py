"""The live service's clock: seconds that never go back, whatever the wall clock does.

Cooldowns, windows and breaker history are spans of time; measured on the wall clock, a clock
stepped back 22 h would leave a rule with a 1 h cooldown silent for 23 h, and stepped forward
would end every window at once. So the live service reads ``time.monotonic()`` from a base
fixed at start: the later of the wall clock and the highest time the state database holds (its
saved high-water mark, every window, fire and breaker time). Monotonic time resets at boot; the
base carries the state across, so a time recorded before a restart is never in the clock's
future. While the service is stopped the wall clock is the only witness; a wall clock stepped
back while stopped makes that stop count as no time (cooldowns end a little later, never
earlier). The offline tester (``replay``) keeps the logs' own timestamps.
"""

from __future__ import annotations

import time

from agent.remediator.state import StateDB

META_KEY = "clock"


class ServiceClock:
    def __init__(self, state: StateDB):
        self.state = state
        known = []
        saved = state.meta(META_KEY)
        if saved:
            known.append(float(saved))
        for w in state.windows.values():
            known.extend(w[-1:])
        for last_fire, breaker in state.groups.values():
            known.extend(x for x in (last_fire, breaker) if x is not None)
        for hist in state.fires.values():
            known.extend(hist[-1:])
        # The wall clock and the monotonic one read together, after the state: read before
        # it, the wall time would be that long old at mono0, and every entry's time after a
        # restart that much earlier than before it.
        wall = time.time()
        self.mono0 = time.monotonic()
        self.base = max([wall, *known])

    def now(self) -> float:
        return self.base + (time.monotonic() - self.mono0)

    def since_wall(
        self, wall_t: float, now: float | None = None, wall: float | None = None
    ) -> float:
        """A log entry's wall time on this clock: its age (never negative) before now.

        ``now`` and ``wall``: both clocks read once for a batch of entries, so the entries of
        one batch keep their order and spacing exactly (read per entry, the two readings
        would be a fraction of a microsecond apart each time)."""
        now = self.now() if now is None else now
        wall = time.time() if wall is None else wall
        return now - max(0.0, wall - wall_t)

    def to_wall(self, t: float) -> float:
        """A time of this clock as a wall time (for records people read): now minus its age."""
        return time.time() - max(0.0, self.now() - t)

    def save(self) -> None:
        self.state.set_meta(META_KEY, repr(self.now()))
