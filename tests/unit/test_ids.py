"""Record ids: format, validation, and strict ordering (the store's paging depends on it)."""

from __future__ import annotations

import itertools
import threading

import pytest

from stigmer.store import is_valid_id, new_id
from stigmer.store.ids import ULID_LENGTH, UlidGenerator

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + ALPHABET.index(char)
    return value


def test_new_id_has_prefix_and_26_crockford_chars() -> None:
    value = new_id("aex")
    prefix, _, ulid = value.partition("-")
    assert prefix == "aex"
    assert len(ulid) == ULID_LENGTH == 26
    assert set(ulid) <= set(ALPHABET)
    assert is_valid_id("aex", value)
    assert not is_valid_id("wex", value)


def test_ids_sort_as_strings_in_creation_order() -> None:
    ids = [new_id("wf") for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(a < b for a, b in itertools.pairwise(ids))


def test_same_millisecond_ids_strictly_increase_by_one() -> None:
    gen = UlidGenerator(clock_ms=lambda: 1_700_000_000_000, random_bits=lambda: 12345)
    values = [decode(gen.next()) for _ in range(100)]
    assert values == list(range(values[0], values[0] + 100))
    assert values[0] >> 80 == 1_700_000_000_000


def test_timestamp_is_the_leading_48_bits() -> None:
    gen = UlidGenerator(clock_ms=lambda: 1_234_567_890_123, random_bits=lambda: 0)
    assert decode(gen.next()) == 1_234_567_890_123 << 80


def test_later_millisecond_sorts_after_earlier_one_whatever_the_randomness() -> None:
    clock = iter([1000, 1001])
    randoms = iter([(1 << 80) - 2, 0])
    gen = UlidGenerator(clock_ms=lambda: next(clock), random_bits=lambda: next(randoms))
    first, second = gen.next(), gen.next()
    assert first < second
    assert decode(second) >> 80 == 1001


def test_clock_going_backwards_still_increases() -> None:
    clock = iter([5000, 4000, 3000, 5000])
    gen = UlidGenerator(clock_ms=lambda: next(clock), random_bits=lambda: 7)
    values = [gen.next() for _ in range(4)]
    assert values == sorted(values)
    assert len(set(values)) == 4


def test_random_overflow_within_a_millisecond_carries_into_time() -> None:
    gen = UlidGenerator(clock_ms=lambda: 1000, random_bits=lambda: (1 << 80) - 1)
    first, second = gen.next(), gen.next()
    assert first < second
    assert decode(second) == 1001 << 80


def test_clock_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="clock"):
        UlidGenerator(clock_ms=lambda: 1 << 48).next()


def test_concurrent_threads_never_get_the_same_id() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_id("aex") for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    everything = [value for out in results for value in out]
    assert len(set(everything)) == 8000
    for out in results:  # each thread sees its own ids increasing too
        assert out == sorted(out)


@pytest.mark.parametrize(
    "value",
    [
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBY",  # 25 chars
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYDD",  # 27 chars
        "aex-01j9z3k4t8q6w2c5n7r1v0xbyd",  # lower case is not canonical
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYI",  # I is not in Crockford's alphabet
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYL",
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYO",
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYU",
        "aex-81J9Z3K4T8Q6W2C5N7R1V0XBYD",  # first char > 7 would exceed 128 bits
        "aex01J9Z3K4T8Q6W2C5N7R1V0XBYDD",  # no dash
        "wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",  # other prefix
        "aex-",
        "",
        "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD\n",
    ],
)
def test_is_valid_id_rejects(value: str) -> None:
    assert not is_valid_id("aex", value)


def test_is_valid_id_accepts_canonical_value() -> None:
    assert is_valid_id("aex", "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD")
    assert is_valid_id("aex", "aex-7ZZZZZZZZZZZZZZZZZZZZZZZZZ")


@pytest.mark.parametrize("prefix", ["", "AEX", "a-b", "1ab", "aex "])
def test_new_id_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)
