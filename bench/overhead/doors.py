"""Each front door's cost on top of the chat path: same gateway, same upstream, one run.

Sequential requests through ``/v1/chat/completions``, ``/v1/messages`` (Anthropic),
``/v1/responses`` (``store: false`` and ``store: true``) and ``/v1/completions``, in rounds
whose door order rotates (so drift hits every door alike), each door on its own kept-alive
connection. Prints per door: the median and p99 of the request time, the time to the
first *content* event of a stream (first text delta: proves the door does not buffer),
and both as differences from the chat door (what translation adds) and ratios.

    python bench/overhead/doors.py --url http://127.0.0.1:18080 --key sk-... [--n 1500] [--rounds 5]

``run.py`` starts tiergate and the shared upstream and calls this (``--doors-only`` runs
just this step). The client is plain ``http.client`` (the same for every door), so its
own cost cancels out in the differences.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

USER = "Say hello."


@dataclass
class Door:
    name: str
    path: str
    body: dict
    stream_body: dict
    #: Is this SSE line the first content of the answer?
    first_content: Callable[[bytes], bool]
    headers: dict[str, str] = field(default_factory=dict)
    lat: list[float] = field(default_factory=list)
    ttfc: list[float] = field(default_factory=list)


def doors() -> list[Door]:
    chat = {"model": "sim", "messages": [{"role": "user", "content": USER}], "max_tokens": 64}
    msgs = {"model": "sim", "max_tokens": 64, "messages": [{"role": "user", "content": USER}]}
    resp = {"model": "sim", "input": USER, "max_output_tokens": 64, "store": False}
    comp = {"model": "sim", "prompt": USER, "max_tokens": 64}
    return [
        Door("chat", "/v1/chat/completions", chat, {**chat, "stream": True},
             lambda line: b'"content":"' in line and b'"content":""' not in line),
        Door("messages", "/v1/messages", msgs, {**msgs, "stream": True},
             lambda line: b'"text_delta"' in line, {"anthropic-version": "2023-06-01"}),
        Door("responses", "/v1/responses", resp, {**resp, "stream": True},
             lambda line: b'"response.output_text.delta"' in line and line.startswith(b"data: ")),
        Door("responses+store", "/v1/responses", {**resp, "store": True}, {**resp, "store": True, "stream": True},
             lambda line: b'"response.output_text.delta"' in line and line.startswith(b"data: ")),
        Door("completions", "/v1/completions", comp, {**comp, "stream": True},
             lambda line: line.startswith(b"data: ") and b'"text":"' in line and b'"text":""' not in line),
    ]


class Client:
    def __init__(self, url: str, key: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.key = key
        self.conns: dict[str, http.client.HTTPConnection] = {}

    def _conn(self, name: str) -> http.client.HTTPConnection:
        c = self.conns.get(name)
        if c is None:
            c = self.conns[name] = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return c

    def _send(self, name: str, path: str, body: bytes, h: dict[str, str]) -> tuple[float, http.client.HTTPResponse]:
        """POST on the door's kept-alive connection; one that the server closed while idle
        (uvicorn's keep-alive timeout) is reopened, outside the timed part."""
        for attempt in (0, 1):
            c = self._conn(name)
            try:
                t0 = time.perf_counter()
                c.request("POST", path, body, h)
                return t0, c.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                c.close()
                self.conns.pop(name, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def once(self, d: Door) -> float:
        body = json.dumps(d.body).encode()
        h = {"content-type": "application/json", "authorization": f"Bearer {self.key}", **d.headers}
        t0, r = self._send(d.name, d.path, body, h)
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"{d.name}: {r.status} {data[:300]!r}")
        return dt

    def stream(self, d: Door) -> float:
        body = json.dumps(d.stream_body).encode()
        h = {"content-type": "application/json", "authorization": f"Bearer {self.key}", **d.headers}
        t0, r = self._send(d.name + "#s", d.path, body, h)
        if r.status != 200:
            raise RuntimeError(f"{d.name} stream: {r.status} {r.read()[:300]!r}")
        first = None
        while True:
            line = r.readline()
            if not line:
                break
            if first is None and d.first_content(line):
                first = time.perf_counter() - t0
        r.read()
        if first is None:
            raise RuntimeError(f"{d.name} stream had no content event")
        return first


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(url: str, key: str, n: int, rounds: int, streams: int) -> dict:
    """Two phases: the translating doors beside chat, then ``store: true`` beside chat (its
    SQLite write is kept away from the other doors' samples)."""
    everything = doors()
    stateless = [d for d in everything if d.name != "responses+store"]
    rows = phase(url, key, stateless, n, rounds, streams)
    store = phase(url, key, [doors()[0], everything[3]], n, rounds, streams)
    return {"rows": rows + [r for r in store if r["door"] != "chat"]}


def phase(url: str, key: str, ds: list[Door], n: int, rounds: int, streams: int) -> list[dict]:
    cli = Client(url, key)
    for d in ds:  # warm every path (imports, pools, first SQLite writes)
        for _ in range(50):
            cli.once(d)
        for _ in range(5):
            cli.stream(d)
    per_round, per_round_s = max(1, n // rounds), max(1, streams // rounds)
    for rnd in range(rounds):
        order = ds[rnd % len(ds):] + ds[:rnd % len(ds)]
        if rnd % 2:
            order.reverse()
        for _ in range(per_round):  # interleave doors request by request within the round
            for d in order:
                d.lat.append(cli.once(d))
        for _ in range(per_round_s):
            for d in order:
                d.ttfc.append(cli.stream(d))
    base = next(d for d in ds if d.name == "chat")
    b50, b99, bt = statistics.median(base.lat), pct(base.lat, 0.99), statistics.median(base.ttfc)
    rows = []
    for d in ds:
        p50, p99, t50 = statistics.median(d.lat), pct(d.lat, 0.99), statistics.median(d.ttfc)
        rows.append({"door": d.name, "n": len(d.lat), "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3,
                     "added_p50_ms": (p50 - b50) * 1e3, "added_p99_ms": (p99 - b99) * 1e3,
                     "p50_ratio": p50 / b50, "streams": len(d.ttfc), "ttfc_p50_ms": t50 * 1e3,
                     "ttfc_p99_ms": pct(d.ttfc, 0.99) * 1e3, "ttfc_added_p50_ms": (t50 - bt) * 1e3,
                     "ttfc_ratio": t50 / bt})
    return rows


def table(res: dict) -> str:
    head = (f"{'door':<16}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'x chat':>8}"
            f"{'streams':>8}{'TTFC p50':>10}{'TTFC p99':>10}{'+TTFC':>8}{'x chat':>8}")
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        lines.append(f"{r['door']:<16}{r['n']:>6}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['added_p50_ms']:>+9.3f}"
                     f"{r['added_p99_ms']:>+9.3f}{r['p50_ratio']:>8.3f}{r['streams']:>8}{r['ttfc_p50_ms']:>10.3f}"
                     f"{r['ttfc_p99_ms']:>10.3f}{r['ttfc_added_p50_ms']:>+8.3f}{r['ttfc_ratio']:>8.3f}")
    lines.append("+p50/+p99/+TTFC: minus the chat door (what the door's translation adds); TTFC: time to the "
                 "first content event of a stream; responses+store is measured in its own phase beside chat.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the gateway's root URL (no /v1)")
    ap.add_argument("--key", required=True)
    ap.add_argument("--n", type=int, default=1500, help="non-streamed requests per door")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--streams", type=int, default=200, help="streams per door")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    res = run(a.url.rstrip("/"), a.key, a.n, a.rounds, a.streams)
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
