"""StopRequest: what one or many Ctrl-C presses do, in and out of the training loop."""

import signal

import pytest

from convscope import signals
from convscope.signals import StopRequest


def test_inside_the_loop_a_signal_is_only_recorded_and_later_ones_change_nothing():
    stop = StopRequest()
    stop.armed = True
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGINT):
        stop.handle(sig)
    assert stop.signal == signal.SIGTERM and stop.exit_code == 143


def test_outside_the_loop_the_first_press_raises_and_quick_repeats_are_ignored(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: now[0])
    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT)
    now[0] += 0.2
    stop.handle(signal.SIGINT)  # the second and third press of a quick triple: nothing
    stop.handle(signal.SIGINT)
    assert stop.exit_code == 130
    now[0] += StopRequest.REPEAT_AFTER  # the first one was swallowed (CPython drops it in a weakref callback):
    with pytest.raises(KeyboardInterrupt):  # a later press still stops
        stop.handle(signal.SIGINT)


def test_after_the_command_is_done_every_signal_is_ignored():
    stop = StopRequest()
    stop.done = True
    stop.handle(signal.SIGINT)
    assert stop.signal is None


def test_installed_restores_the_handlers_or_ignores_signals_when_the_process_ends():
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    with stop.installed():
        assert signal.getsignal(signal.SIGINT) == stop.handle
    assert signal.getsignal(signal.SIGINT) == before
    try:
        with stop.installed(exiting=True):
            pass
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_stop_recorded_in_the_loop_ignores_every_later_press_while_it_saves_and_exits(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: now[0])
    stop = StopRequest()
    stop.armed = True
    stop.handle(signal.SIGINT)
    stop.armed = False  # the loop saved and is raising Interrupted
    now[0] += 5 * StopRequest.REPEAT_AFTER
    stop.handle(signal.SIGINT)  # must not replace Interrupted (and its "saved" message) by a KeyboardInterrupt
    assert stop.signal == signal.SIGINT
