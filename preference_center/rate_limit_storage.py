"""``memory://`` rate-limit counters that clean up in the caller's thread, not in a new one.

The ``limits`` library's ``MemoryStorage`` removes expired counters from a ``threading.Timer``
that runs 10 ms after a counter changes and must then be started again: under steady traffic
every few requests start a new thread, which cost 0.1 to 0.3 ms per rate-limited request in
``benchmarks/bench_http.py`` (more than a counter lookup itself). Expiry does not depend on
that clean-up: the storage checks each counter's expiry when it reads it, so the sweep only
frees memory. This subclass runs the library's own sweep inline, at most once a second.

Importing this module registers it for the ``memory://`` scheme (``limits`` keeps one class
per scheme, the last registered), so ``RATELIMIT_STORAGE_URI = "memory://"`` means this
storage; everything else about it is the library's. ``tests/test_rate_limit_storage.py``
holds it to the library's behaviour, so a change in ``limits``' internals shows there.
"""

from __future__ import annotations

import time

from limits.storage.memory import MemoryStorage

#: Seconds between two sweeps of expired counters.
SWEEP_INTERVAL = 1.0


class InlineSweepMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["memory"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    # MemoryStorage calls its private ``__schedule_expiry`` after every change; the name is
    # mangled, so overriding it means defining the mangled name.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
