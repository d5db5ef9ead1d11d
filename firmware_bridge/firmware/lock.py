"""Door switch (debounced, with how long each state lasted) and the electronic lock.

Pure: pin levels and time come in, events go out. The lock is energised to hold; an
UNLOCK releases it until the door has been opened and closed again, or the time runs
out with the door shut (an open door cannot be locked: it re-locks when it closes).
Every change carries its reason (codec.LOCK_*), which the controller reports in a LOCK
record.
"""

import codec


class Door:
    def __init__(self, now_ms: int, is_open: bool = False) -> None:
        self.is_open = is_open
        self.changed_ms = 0  # since boot for the first change (protocol §4.4)
        self._candidate = is_open
        self._agree = 0

    def sample(self, now_ms: int, level_open: bool, needed: int = 2) -> "int | None":
        """Feed one poll; when the new state held for `needed` polls, returns the duration
        of the state that just ended (ms) and flips `is_open`; else None."""
        if level_open == self.is_open:
            self._agree = 0
            return None
        if level_open != self._candidate:
            self._candidate = level_open
            self._agree = 0
        self._agree += 1
        if self._agree < needed:
            return None
        duration = now_ms - self.changed_ms
        self.is_open = level_open
        self.changed_ms = now_ms
        self._agree = 0
        return duration


class Lock:
    def __init__(self) -> None:
        self.locked = True
        self.reason = codec.LOCK_BOOT  # why the lock is in its current state
        self._until_ms = 0
        self._opened = False

    def unlock(self, now_ms: int, seconds: int) -> None:
        self.locked = False
        self.reason = codec.LOCK_COMMAND
        self._until_ms = now_ms + seconds * 1000
        self._opened = False

    def update(self, now_ms: int, door_open: bool) -> "int | None":
        """Apply the re-lock rules; the reason code when it has just re-locked, else None."""
        if self.locked:
            return None
        if door_open:
            self._opened = True
            return None
        if self._opened:
            self.reason = codec.LOCK_DOOR_CLOSED
        elif now_ms >= self._until_ms:
            self.reason = codec.LOCK_TIMEOUT
        else:
            return None
        self.locked = True
        return self.reason
