"""Pure parts of the cluster: placement, the failure detector, wire values, frames, the outbox."""

from __future__ import annotations

import threading

import pytest

from actors import MailboxFull
from actors.codec import encode_frame
from supervisors.cluster import Detector, RemoteError, owner, place
from supervisors.cluster._outbox import Outbox
from supervisors.cluster._wire import CREDIT, TELL, FatalFrame, FrameReader, decode_reason, encode_reason

TENANTS = [f"tenant-{i:02d}" for i in range(60)]
NEVER, ALWAYS = (lambda: False), (lambda: True)   # "may this thread block?"


# -- placement -------------------------------------------------------------------------------------
def test_placement_is_the_same_whatever_the_order_of_nodes():
    assert place(TENANTS, ["n1", "n2", "n3"]) == place(TENANTS, ["n3", "n1", "n2", "n2"])


def test_every_node_gets_a_share_of_the_tenants():
    counts = {n: 0 for n in ("n1", "n2", "n3")}
    for node in place(TENANTS, counts).values():
        counts[node] += 1
    assert all(8 <= c <= 32 for c in counts.values()), counts


def test_when_a_node_leaves_only_its_tenants_move():
    before = place(TENANTS, ["n1", "n2", "n3"])
    after = place(TENANTS, ["n1", "n3"])
    moved = {t for t in TENANTS if before[t] != after[t]}
    assert moved == {t for t in TENANTS if before[t] == "n2"}
    assert set(after.values()) <= {"n1", "n3"}


def test_when_the_node_comes_back_its_tenants_return():
    assert place(TENANTS, ["n1", "n2", "n3"]) == place(place(TENANTS, ["n1", "n3"]), ["n1", "n2", "n3"])


def test_no_node_means_no_placement():
    assert place(TENANTS, []) == {}
    assert owner("acme", []) is None


# -- the failure detector (time is a parameter) ---------------------------------------------------
@pytest.mark.parametrize("silence, dead", [(0.5, []), (1.4, []), (1.6, ["b"])])
def test_a_member_silent_longer_than_the_timeout_is_dead(silence, dead):
    d = Detector(timeout=1.5)
    d.add("a", 0.0)
    d.add("b", 0.0)
    died = []
    for step in range(1, round(silence * 10) + 1):  # ticks every 0.1 s; "a" keeps talking
        d.heard("a", step / 10)
        died += d.tick(step / 10)
    assert died == dead and d.is_alive("a")


def test_a_dead_member_heard_again_is_alive_again():
    d = Detector(timeout=1.0)
    d.add("b", 0.0)
    for t in (0.4, 0.8, 1.2):
        d.tick(t)
    assert not d.is_alive("b")
    assert d.heard("b", 1.3) is True
    assert d.is_alive("b") and d.heard("b", 1.4) is False


def test_a_detector_that_was_paused_gives_grace_instead_of_declaring_everyone_dead():
    d = Detector(timeout=1.5)
    d.add("b", 0.0)
    d.tick(0.1)
    assert d.tick(10.0) == []            # this process was stopped for 10 s
    died = {}
    for step in range(101, 118):         # b gets a fresh grace period from 10.0 ...
        for member in d.tick(step / 10):
            died[member] = step / 10
    assert died == {"b": 11.6}           # ... and dies if it stays silent


def test_detector_rejects_a_non_positive_timeout():
    with pytest.raises(ValueError, match="timeout"):
        Detector(timeout=0)


# -- wire values and frames -----------------------------------------------------------------------
@pytest.mark.parametrize("reason, back", [
    ("normal", "normal"), ("noconnection", "noconnection"),
    (ValueError("bad"), RemoteError("ValueError", "bad")),
    (RemoteError("KeyError", "'k'"), RemoteError("KeyError", "'k'")),
])
def test_exit_reasons_survive_the_wire(reason, back):
    got = decode_reason(encode_reason(reason))
    assert type(got) is type(back) and str(got) == str(back)


def test_frame_reader_cuts_a_stream_at_any_byte_boundary():
    frames = [encode_frame([[TELL, 1, [i, "x" * i]]]) for i in range(20)]
    stream = b"".join(frames)
    reader = FrameReader(1 << 20)
    got = []
    for i in range(0, len(stream), 7):
        reader.feed(stream[i:i + 7])
        got += [records[0][2][0] for records, _ in reader.frames()]
    assert got == list(range(20))


def test_frame_reader_rejects_a_corrupt_frame_and_stays_in_sync():
    good, bad = encode_frame([[CREDIT, 1]]), bytearray(encode_frame([[CREDIT, 2]]))
    bad[-1] ^= 0xFF
    reader = FrameReader(1 << 20)
    reader.feed(good + bytes(bad) + good)
    items = [item for item, _ in reader.frames()]
    assert items[0] == [[CREDIT, 1]] and isinstance(items[1], ValueError)
    assert items[2] == [[CREDIT, 1]]


def test_frame_reader_gives_up_on_a_bad_header():
    reader = FrameReader(1 << 20)
    reader.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(FatalFrame):
        list(reader.frames())


# -- the outbox: bounds and credit ------------------------------------------------------------------
def test_consecutive_tells_to_one_target_share_one_record():
    box = Outbox("p", limit=10)
    for i in range(3):
        box.put_tell(7, i, can_block=NEVER)
    box.put_tell(8, "x", can_block=NEVER)
    records, counted = box.take(100, 0.1)
    assert records == [[TELL, 7, [0, 1, 2]], [TELL, 8, ["x"]]] and counted == 4


def test_a_full_outbox_refuses_at_once_where_blocking_is_not_allowed():
    box = Outbox("p", limit=2)
    box.put_tell(1, "a", can_block=NEVER)
    box.put_tell(1, "b", can_block=NEVER)
    with pytest.raises(MailboxFull, match="outbox to node p is full"):
        box.put_tell(1, "c", can_block=NEVER)
    assert box.refused == 1 and box.queued() == 2


def test_a_full_outbox_blocks_a_thread_until_the_writer_makes_room():
    box = Outbox("p", limit=1, block_timeout=5.0)
    box.put_tell(1, "a", can_block=NEVER)
    done = threading.Event()
    sender = threading.Thread(target=lambda: (box.put_tell(1, "b", can_block=ALWAYS), done.set()))
    sender.start()
    assert not done.wait(0.05)
    assert box.take(10, 0.1)[1] == 1
    assert done.wait(5.0)
    sender.join(5.0)


def test_a_full_outbox_times_out_a_blocked_thread():
    box = Outbox("p", limit=1, block_timeout=0.05)
    box.put_tell(1, "a", can_block=NEVER)
    with pytest.raises(MailboxFull, match="for 0.05 s"):
        box.put_tell(1, "b", can_block=ALWAYS)


def test_no_data_leaves_without_credit_but_grants_always_do():
    box = Outbox("p", limit=10, window=100)
    box.put_tell(1, "a", can_block=NEVER)
    box.sent(100)                         # a window's worth is in flight
    box.add_grant(40)                     # we owe the peer credit
    records, counted = box.take(10, 0.05)
    assert records == [[CREDIT, 40]] and counted == 0
    assert box.take(10, 0.05) == ([], 0)  # still no credit
    box.add_credit(60)
    records, counted = box.take(10, 0.05)
    assert records == [[TELL, 1, ["a"]]] and counted == 1


def test_a_closed_outbox_drops_and_returns_what_was_queued():
    box = Outbox("p")
    box.put_tell(1, "a", can_block=NEVER)
    assert box.close() == [[TELL, 1, ["a"]]]
    assert box.put_tell(1, "b", can_block=NEVER) is False
    assert box.take(10, 0.01) is None
