"""The durable job queue: transitions happen once, and nothing is lost across kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tiergate_edge.jobs import JobStore, lock_queue_file

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def test_enqueue_get_and_public_shape(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    job = s.enqueue(BODY, {"key_id": "k"}, {"x-tiergate-defer": "allow"})
    got = s.get(job.id)
    assert got is not None and got.status == "queued" and got.body == BODY
    pub = got.public()
    assert pub["object"] == "tiergate.job" and pub["status"] == "queued" and "result" not in pub
    assert s.get("job_missing") is None


def test_client_idempotency_key_does_not_queue_twice(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    a = s.enqueue(BODY, {}, {}, idem_key="client-1")
    b = s.enqueue(BODY, {}, {}, idem_key="client-1")
    assert a.id == b.id and s.counts()["queued"] == 1


def test_result_is_recorded_once_and_only_by_the_lease_holder(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    job = s.enqueue(BODY, {}, {})
    [claimed] = s.claim("a", lease_s=60)
    assert claimed.id == job.id and claimed.status == "running" and claimed.attempts == 1
    assert s.claim("b", lease_s=60) == []                    # leased: nobody else gets it
    assert not s.complete(job.id, "b", {"x": 1})             # not the lease holder
    assert s.complete(job.id, "a", {"x": 2})
    assert not s.complete(job.id, "a", {"x": 3})             # already done
    done = s.get(job.id)
    assert done is not None and done.status == "done" and done.result == {"x": 2}


def test_expired_lease_is_reclaimed_and_release_requeues(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    job = s.enqueue(BODY, {}, {})
    s.claim("a", lease_s=-1)                                  # already expired
    [again] = s.claim("b", lease_s=60)
    assert again.id == job.id and again.attempts == 2
    assert not s.complete(job.id, "a", {})                    # the old holder lost it
    assert s.release(job.id, "b", {"message": "later"})
    assert s.get(job.id).status == "queued"  # type: ignore[union-attr]
    [third] = s.claim("c", lease_s=60)
    assert s.fail(third.id, "c", {"message": "bad request"}, 400)
    failed = s.get(job.id)
    assert failed is not None and failed.status == "failed" and failed.http_status == 400


def test_claim_is_oldest_first_and_bounded(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    ids = [s.enqueue({**BODY, "n": i}, {}, {}).id for i in range(5)]
    got = s.claim("a", lease_s=60, limit=3)
    assert [j.id for j in got] == ids[:3]


def test_recover_requeues_jobs_left_running(tmp_path: Path) -> None:
    s = JobStore(tmp_path / "q.sqlite3")
    s.enqueue(BODY, {}, {})
    s.claim("dead-process", lease_s=3600)
    assert s.recover() == 1
    assert s.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 0}


def test_one_agent_per_queue_file(tmp_path: Path) -> None:
    fd = lock_queue_file(tmp_path / "q.sqlite3")
    try:
        code = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from tiergate_edge.jobs import lock_queue_file
            try:
                lock_queue_file({str(tmp_path / 'q.sqlite3')!r})
            except RuntimeError:
                raise SystemExit(3)
        """)], timeout=30).returncode
        assert code == 3
    finally:
        os.close(fd)


def test_enqueued_jobs_survive_kill_9(tmp_path: Path) -> None:
    """A child enqueues and prints each id after commit, then is SIGKILLed mid-loop:
    every id it printed is in the file afterwards."""
    db = tmp_path / "q.sqlite3"
    script = textwrap.dedent(f"""
        import sys
        from tiergate_edge.jobs import JobStore
        s = JobStore({str(db)!r})
        i = 0
        while True:
            j = s.enqueue({{"n": i}}, {{}}, {{}})
            print(j.id, flush=True)
            i += 1
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    ids = []
    assert p.stdout is not None
    while len(ids) < 50:
        ids.append(p.stdout.readline().strip())
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    s = JobStore(db)
    missing = [i for i in ids if s.get(i) is None]
    assert missing == []
    assert sum(s.counts().values()) >= 50


@pytest.mark.parametrize("bad", ["nope", ""])
def test_unknown_job_is_none(tmp_path: Path, bad: str) -> None:
    assert JobStore(tmp_path / "q.sqlite3").get(bad) is None
