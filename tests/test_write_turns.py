"""Upload batches are written in turns per department (server/admission.py),
on a real store: a department with twenty batches waiting does not go before
another department's one batch."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from dbutil import BACKEND
from server.admission import WriteQueue
from server.store import Store


def _queued(queue: WriteQueue, department: str) -> int:
    with queue._wake:
        return len(queue._queues.get(department, ()))


def _wait(predicate) -> None:
    event = threading.Event()
    while not predicate():
        event.wait(0.01)


@pytest.fixture
def store(database):
    s = Store(database)
    with s.write() as conn:
        conn.execute(text("CREATE TABLE turns (n INTEGER PRIMARY KEY, department TEXT NOT NULL)"))
    yield s
    s.engine.dispose()


def _writer(store: Store, queue: WriteQueue, department: str, order: list, errors: list):
    def work(conn):
        order.append(department)
        conn.execute(text("INSERT INTO turns (n, department) VALUES (:n, :d)"), {"n": len(order), "d": department})

    def run():
        try:
            queue.submit(department, work)
        except Exception as e:
            errors.append(e)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.skipif(BACKEND == "postgresql", reason="hangs on PostgreSQL (the test's way of holding the "
                    "store busy), not yet understood: issue 19")
def test_a_department_with_many_batches_waiting_cannot_starve_another(store):
    queue, order, errors = WriteQueue(store, most_per_round=64), [], []
    threads = []
    with store.write():  # the store is busy: every batch below waits for the writer's turn
        threads.append(_writer(store, queue, "civil_affairs", order, errors))
        _wait(lambda: queue._thread is not None)
        threads += [_writer(store, queue, "population", order, errors) for _ in range(20)]
        _wait(lambda: _queued(queue, "population") == 20 or (_queued(queue, "civil_affairs") == 0
                                                            and _queued(queue, "population") == 20))
        threads.append(_writer(store, queue, "education", order, errors))
        _wait(lambda: _queued(queue, "education") == 1)
    for t in threads:
        t.join(60)
    assert not errors and len(order) == 22
    # The flooding department had a turn per round like the others: education, which came last, is
    # written within the first round after population's first batch, not after all twenty.
    assert order.index("education") <= 3
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM turns")).scalar() == 22
