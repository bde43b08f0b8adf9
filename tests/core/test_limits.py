"""The pure limit bookkeeping."""

from signaling.core.limits import (
    ConnectionCounter,
    FailureWindow,
    RecentSuccesses,
    TokenBucket,
)


def test_a_token_bucket_allows_its_burst_then_its_rate():
    bucket = TokenBucket(rate=10, burst=5)
    assert [bucket.allow(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(0.1)  # one token back after 1/rate seconds
    assert not bucket.allow(0.1)
    assert all(bucket.allow(10.0) for _ in range(5))


def test_failures_count_only_within_the_window():
    window = FailureWindow()
    for now in (0.0, 1.0, 2.0):
        window.record("alice", now=now)
    assert window.count("alice", now=2.5, window=60) == 3
    assert window.count("alice", now=61.5, window=60) == 1
    assert window.count("alice", now=100, window=60) == 0
    assert window.count("bob", now=0, window=60) == 0


def test_connections_are_capped_per_address_and_in_all():
    counter = ConnectionCounter()
    counter.opened("10.0.0.1")
    counter.opened("10.0.0.1")
    assert counter.refusal("10.0.0.1", per_address=2, total=10) == "address"
    assert counter.refusal("10.0.0.2", per_address=2, total=10) is None
    assert counter.refusal("10.0.0.2", per_address=2, total=2) == "server"
    assert counter.refusal("10.0.0.1", per_address=0, total=0) is None
    counter.closed("10.0.0.1")
    assert counter.refusal("10.0.0.1", per_address=2, total=10) is None
    assert counter.open == 1


def test_recent_successes_are_kept_for_their_ttl_and_up_to_their_capacity():
    recent = RecentSuccesses(capacity=2, ttl=10)
    recent.record("a", now=0)
    recent.record("b", now=1)
    assert recent.contains("a", now=9.9) and not recent.contains("a", now=10)
    recent.record("a", now=2)  # seen again: now the newest
    recent.record("c", now=3)  # over capacity: "b", the oldest, goes
    assert not recent.contains("b", now=3)
    assert recent.contains("a", now=3) and recent.contains("c", now=3)
    assert len(recent) == 2
