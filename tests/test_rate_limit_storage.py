"""The ``memory://`` rate-limit storage: the library's counters, swept without a timer thread."""

from __future__ import annotations

import threading
import time

import limits.storage.memory
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from preference_center import rate_limit_storage
from preference_center.extensions import limiter


def test_memory_scheme_is_the_inline_sweeping_storage():
    assert type(storage_from_string("memory://")) is rate_limit_storage.InlineSweepMemoryStorage


def test_the_app_counts_with_it(app):
    with app.app_context():
        assert isinstance(limiter.storage, rate_limit_storage.InlineSweepMemoryStorage)


def test_counters_count_and_expire_as_the_librarys_do():
    item = RateLimitItemPerSecond(2, 1)
    for strategy in (FixedWindowRateLimiter, MovingWindowRateLimiter):
        ours = strategy(storage_from_string("memory://"))
        theirs = strategy(limits.storage.memory.MemoryStorage())
        for rate_limiter in (ours, theirs):
            assert [rate_limiter.hit(item, "ip") for _ in range(3)] == [True, True, False]
        time.sleep(1.05)
        for rate_limiter in (ours, theirs):
            assert rate_limiter.hit(item, "ip"), f"{strategy.__name__}: the window has passed"


def test_no_thread_is_started_per_hit(monkeypatch):
    started = []

    class CountingTimer(threading.Timer):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(limits.storage.memory.threading, "Timer", CountingTimer)
    storage = storage_from_string("memory://")
    at_creation = len(started)
    rate_limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(1000, 1)
    for _ in range(20):
        rate_limiter.hit(item, "ip")
        time.sleep(0.012)  # longer than the library's 10 ms timer: it would start again
    assert len(started) == at_creation

    library = FixedWindowRateLimiter(limits.storage.memory.MemoryStorage())
    before = len(started)
    for _ in range(5):
        library.hit(item, "ip")
        time.sleep(0.012)
    assert len(started) > before, "the library's own storage does start timers (control)"


def test_expired_counters_are_swept_inline(monkeypatch):
    monkeypatch.setattr(rate_limit_storage, "SWEEP_INTERVAL", 0.0)
    storage = storage_from_string("memory://")
    storage.incr("short", expiry=0.05)
    storage.incr("long", expiry=60)
    time.sleep(0.1)
    storage._next_sweep = 0.0
    storage.incr("trigger", expiry=60)
    assert "short" not in storage.storage
    assert storage.storage["long"] == 1
