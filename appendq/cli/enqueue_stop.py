"""Ctrl-C during ``appendq enqueue``: stop between rows, so that the summary stays exact.

The first SIGINT asks the import to stop after the row being handled: the rows already read are
validated and pushed as usual, and the receipt lists every refused row up to there. If the import
is waiting for the file (a pipe or FIFO with nothing to read yet), the wait ends at once. A second
SIGINT stops at once, as Ctrl-C always does (only needed if Redis hangs); what was queued is then
known only as ``EnqueueInterrupted`` tells it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import BinaryIO

from producer.files import Item


class _StopReading(BaseException):
    """Raised by the handler out of a read that is waiting: stop reading the file now.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


class CtrlC:
    """Watches SIGINT for one import; ``requested`` once Ctrl-C was pressed; ``last_row`` is the
    (starting line of the) last row handed to the producer."""

    @property
    def stopped(self) -> bool:
        """Ctrl-C cut the import short (it was pressed before the file was read to its end)."""
        return self.requested and not self.finished

    def __init__(self) -> None:
        self.requested = False
        self.reading = False
        self.finished = False  # the whole file was handed on: a late Ctrl-C stopped nothing
        self.last_row: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT while the block runs (main thread only: elsewhere, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.reading:
            raise _StopReading

    def watch(self, stream: BinaryIO) -> _Watched:
        """``stream``, with its reads marked so that Ctrl-C can end a read that waits."""
        return _Watched(stream, self)

    def follow(self, items: Iterable[Item]) -> Iterator[Item]:
        """Pass ``items`` on until Ctrl-C; a row read after it is dropped, never half-handled."""
        iterator = iter(items)
        while not self.requested:
            try:
                item = next(iterator)
            except StopIteration:
                self.finished = True
                return
            except _StopReading:
                return
            if self.requested:
                return
            self.last_row = item[0]
            yield item


class _Watched:
    """A binary stream whose reads set ``CtrlC.reading`` while they last."""

    def __init__(self, stream: BinaryIO, ctrl: CtrlC) -> None:
        self.stream = stream
        self.ctrl = ctrl

    def read(self, size: int = -1) -> bytes:
        read1 = getattr(self.stream, "read1", None)
        try:
            self.ctrl.reading = True
            data = read1(size) if read1 is not None and size > 0 else self.stream.read(size)
        finally:
            self.ctrl.reading = False
        return bytes(data)
