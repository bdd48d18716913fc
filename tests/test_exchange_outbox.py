"""A stream connection's life and send queue, without sockets (kit.exchange._outbox)."""

from __future__ import annotations

import asyncio

from kit.exchange._faults import GARBAGE
from kit.exchange._outbox import CONTROL, EVENT, ConnState, Outbox


def test_a_connection_is_open_then_closing_then_closed_and_closes_once():
    box = Outbox(capacity=4)
    assert box.state is ConnState.OPEN and box.is_open
    assert box.close("slow consumer") is True
    assert box.state is ConnState.CLOSING and box.why == "slow consumer"
    assert box.close("again") is False  # the first reason stays; the caller logs once
    assert box.why == "slow consumer"
    box.finish()
    assert box.state is ConnState.CLOSED
    assert box.close("late") is False


def test_a_full_queue_refuses_events_but_never_control_answers():
    box = Outbox(capacity=2)
    assert box.offer("e1") and box.offer("e2")
    assert box.offer("e3") is False  # the caller drops the slow client
    box.answer("a1")
    assert box.queue.qsize() == 3
    assert [box.queue.get_nowait() for _ in range(3)] == [(EVENT, "e1"), (EVENT, "e2"), (CONTROL, "a1")]


def test_nothing_is_queued_once_closing():
    box = Outbox(capacity=2)
    box.close("lifetime")
    assert box.offer("e") is True  # not a slow client: there is just nobody to send to
    box.answer("a")

    async def put() -> None:
        await box.put("e")

    asyncio.run(put())
    assert box.queue.qsize() == 0


def test_closing_releases_a_replay_waiting_for_room():
    async def scenario() -> ConnState:
        box = Outbox(capacity=1)
        await box.put("first")
        waiter = asyncio.create_task(box.put("second"))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # lossless backpressure: the max-speed clock waits
        box.close("dropped")
        await asyncio.wait_for(waiter, 1)
        assert box.queue.qsize() == 1  # the waiting event was not queued
        return box.state

    assert asyncio.run(scenario()) is ConnState.CLOSING


def test_room_reopens_when_the_writer_has_drained_half_the_queue():
    async def scenario() -> list[str]:
        box = Outbox(capacity=4)
        for i in range(4):
            await box.put(f"e{i}")
        waiter = asyncio.create_task(box.put("e4"))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        batch = await box.next_batch()  # takes everything queued: the queue is empty
        await asyncio.wait_for(waiter, 1)
        return [f for _, f in batch] + [f for _, f in [box.queue.get_nowait()]]

    assert asyncio.run(scenario()) == ["e0", "e1", "e2", "e3", "e4"]


def test_counted_faults_touch_event_frames_only():
    box = Outbox(capacity=100)
    box.inject(malformed=1, replace=True)
    frames, faulty = box.frames([(CONTROL, "answer"), (EVENT, "e1"), (EVENT, "e2")])
    assert frames == ["answer", GARBAGE[0], "e2"] and faulty == 1
    box.inject(malformed=1, replace=False)
    frames, faulty = box.frames([(EVENT, "e3")])
    assert frames == [GARBAGE[1], "e3"] and faulty == 2
    box.inject(duplicate=1)
    assert box.frames([(EVENT, "e4"), (EVENT, "e5")]) == (["e4", "e4", "e5"], 2)
    box.inject(reorder=1)
    assert box.frames([(EVENT, "e6")]) == ([], 0)  # held until its successor
    assert box.frames([(CONTROL, "a"), (EVENT, "e7"), (EVENT, "e8")]) == (["a", "e7", "e6", "e8"], 2)
