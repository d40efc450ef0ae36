"""Rate limits shared between processes through Redis (RATELIMIT_STORAGE_URI)."""

from __future__ import annotations

import os

import pytest
from builders import post_signup, seed_topics
from conftest import _base_config

from preference_center import create_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_or_skip() -> str:
    import redis

    try:
        # Database 15 is the tests' own: start each test with empty counters.
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).flushdb()
    except redis.RedisError as exc:
        reason = f"Redis is not reachable at {REDIS_URL} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_URL


def test_c1_c9_the_signup_limit_holds_across_processes_sharing_redis(database_url, smtp, backend):
    """Two app instances stand for two gunicorn workers: the budget is one, not two."""
    url = redis_or_skip()
    config = _base_config(
        database_url,
        smtp.port,
        RATELIMIT_STORAGE_URI=url,
        SIGNUP_RATE_LIMIT="4 per minute",
    )
    workers = [create_app(config), create_app(config)]
    from preference_center.extensions import db
    from preference_center.services import consent

    with workers[0].app_context():
        db.create_all()
        consent.seed_defaults()
        db.session.remove()
    seed_topics(workers[0])
    statuses = [
        post_signup(workers[i % 2].test_client(), f"r{i}@example.be").status_code for i in range(6)
    ]
    assert statuses == [200, 200, 200, 200, 429, 429]
