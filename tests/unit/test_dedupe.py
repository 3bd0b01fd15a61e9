"""The seen-event window, driven by a fake clock."""

import asyncio
import tracemalloc

from bridge.core.dedupe import (
    DIGEST_BYTES,
    FLEET_PROBE_KEY,
    InFlight,
    Newest,
    SeenWindow,
    digest,
    fleet_record,
    read_fleet_record,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_add_and_contains() -> None:
    window = SeenWindow(clock=Clock())
    assert not window.known(1234, ["e-1"])
    window.add_many(1234, ["e-1"])
    assert window.known(1234, ["e-1"])
    assert not window.known(1234, ["e-2"])
    assert not window.known(1010, ["e-1"])
    assert len(window) == 1


def test_adding_twice_keeps_one_entry() -> None:
    window = SeenWindow(clock=Clock())
    window.add_many(1, ["a"])
    window.add_many(1, ["a"])
    assert len(window) == 1


def test_count_bound_evicts_the_oldest() -> None:
    window = SeenWindow(max_entries=3, clock=Clock())
    for event_id in ("a", "b", "c", "d"):
        window.add_many(1, [event_id])
    assert len(window) == 3
    assert not window.known(1, ["a"])
    assert all(window.known(1, [e]) for e in ("b", "c", "d"))


def test_re_adding_keeps_the_first_place() -> None:
    # Only an event published twice (two identical batches at once) is added twice; the
    # window counts from its first acknowledgment.
    window = SeenWindow(max_entries=3, clock=Clock())
    for event_id in ("a", "b", "c"):
        window.add_many(1, [event_id])
    window.add_many(1, ["a"])
    window.add_many(1, ["d"])
    assert not window.known(1, ["a"])
    assert all(window.known(1, [e]) for e in ("b", "c", "d"))


def test_age_bound_expires_entries() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=60.0, clock=clock)
    window.add_many(1, ["old"])
    clock.now += 60.0
    assert window.known(1, ["old"])
    clock.now += 0.5
    assert not window.known(1, ["old"])


def test_expired_entries_are_dropped_on_add() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=10.0, clock=clock)
    window.add_many(1, ["a"])
    window.add_many(1, ["b"])
    clock.now += 5.0
    window.add_many(1, ["c"])
    clock.now += 6.0
    window.add_many(1, ["d"])
    assert len(window) == 2
    assert [bool(window.known(1, [e])) for e in "abcd"] == [False, False, True, True]


def test_re_adding_keeps_the_first_time() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=10.0, clock=clock)
    window.add_many(1, ["a"])
    clock.now += 8.0
    window.add_many(1, ["a"])
    window.add_many(1, ["b"])
    clock.now += 3.0
    assert not window.known(1, ["a"])
    assert window.known(1, ["b"])
    window.add_many(1, ["c"])
    assert len(window) == 2


def test_zero_max_entries_disables_the_window() -> None:
    window = SeenWindow(max_entries=0, clock=Clock())
    window.add_many(1, ["a"])
    assert not window.known(1, ["a"])
    assert len(window) == 0


def test_add_many_is_add_for_each_id_of_one_account() -> None:
    one_by_one = SeenWindow(max_entries=3, clock=Clock())
    together = SeenWindow(max_entries=3, clock=Clock())
    ids = ["a", None, "b", "a", "c", "d"]
    for event_id in ids:
        if event_id is not None:
            one_by_one.add_many(7, [event_id])
    together.add_many(7, ids)
    for event_id in ("a", "b", "c", "d"):
        assert together.known(7, [event_id]) == one_by_one.known(7, [event_id])
    assert len(together) == len(one_by_one) == 3
    assert not together.known(7, ["a"])
    assert not together.known(8, ["c"])


def test_add_many_with_no_room_keeps_nothing() -> None:
    window = SeenWindow(max_entries=0, clock=Clock())
    window.add_many(1, ["a"])
    assert len(window) == 0


def test_known_agrees_with_contains_including_expiry() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=60.0, clock=clock)
    window.add_many(5, ["old"])
    clock.now += 30
    window.add_many(5, ["new"])
    window.add_many(6, ["other-account"])
    ids = ["old", "new", "other-account", "never", None]
    assert window.known(5, ids) == {"old", "new"}
    clock.now += 31  # "old" is now 61 s old, "new" 31 s
    assert window.known(5, ids) == {"new"}
    assert window.known(5, ids) == {e for e in ids if e is not None and window.known(5, [e])}
    assert SeenWindow(clock=clock).known(5, ids) == set()


def test_keys_are_fixed_size_digests_of_account_and_id() -> None:
    keys = {digest(1, "e-1"), digest(2, "e-1"), digest(1, "e-2"), digest(12, "3:x")}
    assert len(keys) == 4
    assert digest(1, "e-1") == digest(1, "e-1")
    assert {len(k) for k in keys} == {DIGEST_BYTES}
    assert len(digest(1, "\U0001f600" * 512)) == DIGEST_BYTES
    assert digest(1, "\ud800")  # a lone surrogate is hashed, not an error


def test_keys_and_ids_agree() -> None:
    window = SeenWindow(clock=Clock())
    window.add_keys([digest(3, "a"), None])
    window.add_many(3, ["b"])
    assert window.known(3, ["a", "b", "c"]) == {"a", "b"}
    assert window.known_keys([digest(3, "b"), digest(4, "b"), None]) == {digest(3, "b")}


# The README's "Duplicates" section gives about 110 bytes per entry for a window of
# 100,000; 10,000 entries take about 87 each when added 100 at a time (the dict's table is
# relatively smaller), 111 one by one. The bound leaves room for other Python versions.
BYTES_PER_ENTRY_BOUND = 160


def test_memory_per_entry_does_not_depend_on_the_length_of_the_id() -> None:
    count = 10_000
    # 512 characters of 4 bytes in UTF-8: 2 KiB of text per id, as a str about 2 KiB too.
    ids = [f"{i:012d}" + "\U0001f600" * 500 for i in range(count)]
    short = [f"{i:036d}" for i in range(count)]
    used = {}
    for name, event_ids in (("long", ids), ("short", short)):
        window = SeenWindow(max_entries=count, clock=Clock())
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for start in range(0, count, 100):
                window.add_many(1234, event_ids[start : start + 100])
            used[name] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(window) == count
    assert used["long"] / count < BYTES_PER_ENTRY_BOUND, used
    assert abs(used["long"] - used["short"]) < count, used  # under a byte per entry apart


async def test_in_flight_keys_leave_when_their_outcome_settles() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    keys = [digest(1, "a"), None, digest(1, "b"), digest(1, "c")]
    in_flight = InFlight()

    in_flight.tracker(keys)([(0, first), (1, first), (2, first), (3, second)])

    assert len(in_flight) == 3, "an event without an id cannot be joined"
    assert in_flight.get(digest(1, "a")) is first
    assert in_flight.get(digest(1, "c")) is second
    first.set_result(None)
    second.set_exception(RuntimeError("expired"))
    second.exception()
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert len(in_flight) == 0


async def test_a_key_produced_again_follows_its_latest_outcome() -> None:
    loop = asyncio.get_running_loop()
    old: asyncio.Future[None] = loop.create_future()
    new: asyncio.Future[None] = loop.create_future()
    key = digest(7, "x")
    in_flight = InFlight()
    in_flight.track([key], [(0, old)])
    in_flight.track([key], [(0, new)])

    old.set_exception(RuntimeError("failed"))
    old.exception()
    await asyncio.sleep(0)

    assert in_flight.get(key) is new, "the older outcome settling removed the newer entry"


def test_settled_outcomes_are_not_tracked() -> None:
    loop = asyncio.new_event_loop()
    try:
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        in_flight = InFlight()
        in_flight.track([digest(1, "a")], [(0, done)])
        assert len(in_flight) == 0
    finally:
        loop.close()


# ------------------------------------------------------------ the fleet's entries


def test_learnt_keys_are_known_and_told_apart_from_local_ones() -> None:
    window = SeenWindow(clock=Clock())
    local, remote = digest(1, "mine"), digest(1, "theirs")
    window.add_keys([local])

    assert window.learn([remote, local], at=1000.0) == 1

    assert window.known_keys([local, remote]) == {local, remote}
    assert window.from_fleet([local, remote]) == {remote}
    assert len(window) == 2


def test_a_learnt_key_expires_by_the_time_it_was_acknowledged() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=60.0, clock=clock)
    key = digest(1, "a")

    window.learn([key], at=clock.now - 50.0)

    assert window.known_keys([key]) == {key}
    clock.now += 10.5
    assert window.known_keys([key]) == set()


def test_a_key_older_than_the_window_is_not_learnt() -> None:
    clock = Clock()
    window = SeenWindow(max_age_seconds=60.0, clock=clock)
    assert window.learn([digest(1, "a")], at=clock.now - 61.0) == 0
    assert len(window) == 0


def test_learnt_keys_share_the_count_bound_oldest_out_first() -> None:
    clock = Clock()
    window = SeenWindow(max_entries=3, clock=clock)
    window.add_keys([digest(1, "local-1")])
    clock.now += 1
    window.learn([digest(1, "remote-1"), digest(1, "remote-2")], at=clock.now)
    clock.now += 1
    window.add_keys([digest(1, "local-2")])

    assert len(window) == 3
    assert not window.known(1, ["local-1"])
    assert all(window.known(1, [e]) for e in ("remote-1", "remote-2", "local-2"))


def test_a_merge_keeps_the_newest_entries_in_order_of_age() -> None:
    clock = Clock()
    window = SeenWindow(max_entries=4, max_age_seconds=100.0, clock=clock)
    window.add_keys([digest(1, "local")])  # at 1000
    loaded = [(990.0 - n, digest(1, f"old-{n}")) for n in range(5)]  # 990, 989, ... 986
    loaded.append((890.0, digest(1, "expired")))  # older than the window

    assert window.merge(reversed(loaded)) == 3

    assert len(window) == 4
    assert window.known_keys([digest(1, "local")])
    assert window.known(1, [f"old-{n}" for n in range(5)]) == {"old-0", "old-1", "old-2"}
    # Eviction still takes the oldest first: the window is in order of age again.
    clock.now += 1
    window.add_keys([digest(1, "new")])
    assert window.known(1, ["old-0", "old-1", "old-2"]) == {"old-0", "old-1"}


def test_a_merge_does_not_change_keys_already_known() -> None:
    window = SeenWindow(clock=Clock())
    key = digest(1, "a")
    window.add_keys([key])
    assert window.merge([(999.0, key)]) == 0
    assert window.from_fleet([key]) == set()


def test_the_loader_keeps_the_newest_within_its_capacity() -> None:
    loader = Newest(3)
    for stamp in (5.0, 1.0, 9.0, 3.0, 7.0, 2.0):
        loader.offer(stamp, str(stamp).encode())
    assert len(loader) == 3
    assert sorted(stamp for stamp, _ in loader.take()) == [5.0, 7.0, 9.0]
    assert len(loader) == 0


def test_fleet_records_round_trip_and_foreign_records_are_skipped() -> None:
    key = digest(1234, "e-1")
    record_key, value = fleet_record("alm", key, 1_765_000_000_123)

    assert record_key[:DIGEST_BYTES] == key
    assert read_fleet_record(record_key, value) == ("alm", key, 1_765_000_000_123)
    assert read_fleet_record(FLEET_PROBE_KEY, None) is None
    assert read_fleet_record(record_key, None) is None  # a tombstone
    assert read_fleet_record(key, value) is None  # no receiver
    assert read_fleet_record(record_key, b"12x") is None
    assert read_fleet_record(record_key, b"9" * 21) is None
    assert read_fleet_record(key + b"\xff", value) is None


def test_the_loader_holds_about_88_bytes_an_entry_besides_the_digests() -> None:
    count = 10_000
    keys = [digest(1, str(n)) for n in range(count)]
    loader = Newest(count)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, key in enumerate(keys):
            loader.offer(float(n), key)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(loader) == count
    # A tuple, a float and a list slot (docs/operations.md, Memory).
    assert used / count < 100, used
