import os
import signal
import time

import pytest

from tuner._interrupt import Interrupt


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own Ctrl-C handler, even when pytest was started with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _signal_self(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode boundary


def test_first_signal_is_checked_second_stops_at_once():
    with Interrupt(signal.SIGINT) as sigint:
        sigint.check()  # nothing yet
        _signal_self(signal.SIGINT)  # no exception here: the loop decides where to stop
        assert sigint.hit
        with pytest.raises(KeyboardInterrupt):  # a loop that does not check is stopped
            _signal_self(signal.SIGINT)
        _signal_self(signal.SIGINT)  # stopping already: the way out is not cut short
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_signals_after_the_stop_began_do_not_cut_the_way_out_short():
    with Interrupt(signal.SIGINT) as sigint:
        _signal_self(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            sigint.check()  # the loop stops here
        with sigint.hold():  # closing the pool, recording the state
            _signal_self(signal.SIGINT)
            _signal_self(signal.SIGINT)
        assert sigint.describe() == "Ctrl-C"


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with Interrupt(signal.SIGTERM) as stop:
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            _signal_self(signal.SIGTERM)
            stop.check()  # nothing arrived
    finally:
        signal.signal(signal.SIGTERM, previous)
