import random

import pytest

from statemachine import BackoffPolicy


def test_default_schedule_doubles_then_caps_at_30():
    assert BackoffPolicy().schedule(10) == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]


def test_custom_policy():
    policy = BackoffPolicy(initial=0.5, factor=3, cap=10)
    assert policy.schedule(5) == [0.5, 1.5, 4.5, 10, 10]


def test_huge_failure_counts_do_not_overflow():
    assert BackoffPolicy().delay(100_000) == 30


@pytest.mark.parametrize("failures", range(1, 12))
def test_jitter_stays_within_bounds_and_under_cap(failures):
    policy = BackoffPolicy(jitter=0.2, rng=random.Random(failures))
    base = policy.base_delay(failures)
    seen = {policy.delay(failures) for _ in range(200)}
    assert all(base * 0.8 <= d <= min(30, base * 1.2) for d in seen)
    assert len(seen) > 1, "jitter should spread the delays"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"initial": 0}, "initial"), ({"factor": 0.5}, "factor"), ({"cap": 0.1}, "cap"), ({"jitter": 1.5}, "jitter")],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BackoffPolicy(**kwargs)


def test_failures_start_at_one():
    with pytest.raises(ValueError, match="failures"):
        BackoffPolicy().delay(0)
