"""The thread -> event loop handoff of streamed local tokens, with a real producer thread."""

from __future__ import annotations

import asyncio
import threading
import time

from tiergate_edge.handoff import Handoff, merge_deltas


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


async def test_every_item_arrives_in_order_and_a_waiting_loop_is_woken() -> None:
    h = Handoff(asyncio.get_running_loop())
    got: list[int] = []

    def produce() -> None:
        for i in range(200):
            h.put(i)
            if i % 50 == 0:
                time.sleep(0.01)  # the consumer catches up and waits: the next put must wake it

    t = threading.Thread(target=produce)
    t.start()
    while len(got) < 200:
        got += await asyncio.wait_for(h.take(), timeout=5)
    t.join()
    assert got == list(range(200))


async def test_a_lagging_loop_takes_the_backlog_in_one_batch() -> None:
    h = Handoff(asyncio.get_running_loop())
    t = threading.Thread(target=lambda: [h.put(i) for i in range(5)])
    t.start()
    t.join()                                  # all five arrived while nobody was waiting
    assert await h.take() == [0, 1, 2, 3, 4]
    waiter = asyncio.ensure_future(h.take())  # nothing left: it waits ...
    await asyncio.sleep(0.01)
    assert not waiter.done()
    threading.Thread(target=h.put, args=("late",)).start()
    assert await asyncio.wait_for(waiter, timeout=5) == ["late"]


async def test_a_cancelled_take_loses_nothing() -> None:
    h = Handoff(asyncio.get_running_loop())
    waiter = asyncio.ensure_future(h.take())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    h.put("kept")                             # after the cancel: stays for the next take
    assert await asyncio.wait_for(h.take(), timeout=5) == ["kept"]


def test_merge_joins_only_plain_text_deltas() -> None:
    first = chunk({"role": "assistant", "content": ""})
    a, b, c = chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({"content": "!"})
    end = chunk({}, "stop")
    usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}
    out = merge_deltas([first, a, b, c, end, usage])
    assert [ch["choices"][0]["delta"] if ch["choices"] else "usage" for ch in out] == [
        {"role": "assistant", "content": ""}, {"content": "Hello!"}, {}, "usage"]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    single = [chunk({"content": "x"})]
    assert merge_deltas(single) is single
