"""The lead's wait for its workers (--workers N): it says "listening" only when every worker
serves, exits 1 when one does not, and a SIGINT/SIGTERM during the wait stops it at once."""
from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

from bootstorm.cli import _await_workers


def wait(fd: int, count: int, *, timeout: float = 30.0, stop_after: float | None = None):
    """_await_workers on a fresh uvloop; stop_after sets the stop event that much later."""
    async def main():
        stop = asyncio.Event()
        if stop_after is not None:
            asyncio.get_running_loop().call_later(stop_after, stop.set)
        # the guard is far above any path here: only a wait that ignores stop would reach it
        return await asyncio.wait_for(_await_workers(fd, count, stop, timeout=timeout), 20)
    return uvloop.run(main())


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_every_worker_ready():
    r, w = os.pipe()
    os.write(w, b".")
    os.write(w, b".")
    assert wait(r, 2) is True
    assert closed(r)
    os.close(w)


def test_a_worker_that_exited_is_reported(capsys):
    r, w = os.pipe()
    os.write(w, b".")
    os.close(w)  # the other worker exited: its end of the pipe is closed
    with pytest.raises(SystemExit) as exc:
        wait(r, 2)
    assert exc.value.code == 1
    assert "1 of 3 worker processes did not start" in capsys.readouterr().err
    assert closed(r)


def test_a_worker_that_never_answers_times_out(capsys):
    r, w = os.pipe()
    with pytest.raises(SystemExit):
        wait(r, 1, timeout=0.2)
    assert "1 of 2 worker processes did not start" in capsys.readouterr().err
    assert closed(r)
    os.close(w)


def test_a_stop_during_the_wait_ends_it():
    r, w = os.pipe()  # a worker still starting: nothing written, its end open
    assert wait(r, 1, stop_after=0.1) is False
    assert closed(r)
    os.close(w)
