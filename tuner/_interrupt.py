"""Ctrl-C (and SIGTERM for workers) that stops a study loop at a safe point.

The first signal only sets a flag, which the loop checks between steps (:meth:`check`);
a second one raises ``KeyboardInterrupt`` at once. Once the stop has begun (a check raised,
or the second signal did), further signals only mark it, so the way out (closing the pool,
recording the study's state) runs to its end. Raising on the first would be lost, with a
traceback on the terminal, whenever the signal lands in a weakref callback or ``__del__``
(Python ignores exceptions there; xgboost frees its data that way), and the loop would not
stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupt:
    def __init__(self, *signals: signal.Signals) -> None:
        self.signals = signals or (signal.SIGINT,)
        self.hit = False
        self._holding = False
        self._previous: dict[signal.Signals, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.hit:
            self.hit, self.signum = True, signum
        elif not self._holding:  # asked twice: stop now (once: the way out is not cut short)
            self._holding = True
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Further signals only mark the stop while the final bookkeeping runs: another
        Ctrl-C must not cut the recording of how the run ended short."""
        self._holding = True
        yield

    def describe(self) -> str:
        """How the run was stopped, for messages ("Ctrl-C", "SIGTERM")."""
        signum = getattr(self, "signum", signal.SIGINT)
        return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a signal arrived (the stop has begun: from here on
        further signals do not raise again)."""
        if self.hit:
            self._holding = True
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for sig in self.signals:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored stays ignored
                    self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
