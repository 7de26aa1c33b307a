"""The fast path of a waiting call: try in the caller's thread first, and
go through sluice's loop thread (two thread wake-ups, tens of
microseconds) only if that fails.

Trying first never jumps a waiter that has reached the key's queue (the
library refuses a try then). It could jump a wait that is still on its way
to the loop thread, started earlier through the same object, so a key with
such a wait goes the slow way; the count is taken before the wait is
started and dropped after its outcome arrived, under the same lock as the
try itself, so no try can slip between the two."""
import threading


class InFlight:
    def __init__(self):
        self._lock = threading.Lock()
        self._keys = {}  # key bytes -> waits started through this object, not yet over

    def attempt(self, keys, try_now):
        """try_now() if no wait on any of `keys` is in flight, else None."""
        with self._lock:
            if any(k in self._keys for k in keys):
                return None
            return try_now()

    def add(self, keys):
        with self._lock:
            for k in keys:
                self._keys[k] = self._keys.get(k, 0) + 1

    def remove(self, keys):
        with self._lock:
            for k in keys:
                n = self._keys[k] - 1
                if n:
                    self._keys[k] = n
                else:
                    del self._keys[k]
