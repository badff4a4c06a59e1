"""StopRequest: what one or many Ctrl-C presses do, in and out of the training loop."""

import signal
import time

import pytest

from convscope.signals import StopRequest


def test_inside_the_loop_a_signal_is_only_recorded_and_later_ones_change_nothing():
    stop = StopRequest()
    stop.armed = True
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGINT):
        stop.handle(sig)
    assert stop.signal == signal.SIGTERM and stop.exit_code == 143


def test_outside_the_loop_the_first_press_raises_and_repeats_are_ignored():
    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT)
    stop.handle(signal.SIGINT)  # the second and third press of a quick triple: nothing
    stop.handle(signal.SIGTERM)
    assert stop.exit_code == 130


def test_an_interrupt_that_cpython_drops_in_a_weakref_callback_is_delivered_again():
    """Before: 'Exception ignored in: <function WeakKeyDictionary...>' with a KeyboardInterrupt traceback, and the
    press was lost (the run went on to exit 0)."""
    import weakref

    class Thing:
        pass

    stop = StopRequest()
    with stop.installed():
        thing = Thing()
        weakref.finalize(thing, signal.raise_signal, signal.SIGINT)  # the signal arrives inside a GC callback
        with pytest.raises(KeyboardInterrupt):
            del thing  # the first KeyboardInterrupt is dropped by CPython; the second one reaches us here
            for _ in range(200):
                time.sleep(0.01)
    assert stop.signal == signal.SIGINT


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


def test_a_stop_recorded_in_the_loop_ignores_every_later_press_while_it_saves_and_exits():
    stop = StopRequest()
    stop.armed = True
    stop.handle(signal.SIGINT)
    stop.armed = False  # the loop saved and is raising Interrupted
    stop.handle(signal.SIGINT)  # must not replace Interrupted (and its "saved" message) by a KeyboardInterrupt
    assert stop.signal == signal.SIGINT
