"""RecentKeys: the hint that a request is a replay, bounded in time and in size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from h2s_checkout.flows.recent_keys import RecentKeys

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_a_key_is_expected_until_its_moment_and_not_after():
    recent = RecentKeys()
    recent.remember("derived:a", NOW + timedelta(minutes=5))

    assert recent.expects_replay("derived:a", NOW + timedelta(minutes=4, seconds=59))
    assert not recent.expects_replay("derived:a", NOW + timedelta(minutes=5))
    assert len(recent) == 0  # an expired key is dropped when it is asked for
    assert not recent.expects_replay("derived:b", NOW)


def test_when_full_the_key_remembered_longest_ago_goes_first():
    recent = RecentKeys(capacity=2)
    until = NOW + timedelta(minutes=5)
    recent.remember("a", until)
    recent.remember("b", until)
    recent.remember("a", until)  # remembered again: now the newest
    recent.remember("c", until)

    assert len(recent) == 2
    assert recent.expects_replay("a", NOW)
    assert not recent.expects_replay("b", NOW)
    assert recent.expects_replay("c", NOW)


def test_a_forgotten_key_is_not_expected():
    recent = RecentKeys()
    recent.remember("a", NOW + timedelta(minutes=5))
    recent.forget("a")
    recent.forget("never-there")

    assert not recent.expects_replay("a", NOW)
