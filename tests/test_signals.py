import os
import signal
import threading

import pytest

from softprompt.signals import handling


class Caught(Exception):
    pass


def raise_caught(signum, frame):
    raise Caught(signum)


def test_the_handler_runs_inside_the_block_and_the_previous_one_comes_back():
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Caught), handling(signal.SIGUSR1, raise_caught) as installed:
        assert installed
        os.kill(os.getpid(), signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_the_previous_handler_comes_back_when_the_block_fails():
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(ZeroDivisionError), handling(signal.SIGUSR1, raise_caught):
        raise ZeroDivisionError
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_block_that_installs_a_handler_for_its_own_ending_keeps_it():
    """report_rank_failure ignores SIGTERM while its message is printed; the previous handler must not undo that."""
    before = signal.getsignal(signal.SIGUSR1)
    try:
        with handling(signal.SIGUSR1, raise_caught):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_outside_the_main_thread_it_installs_nothing_and_still_runs_the_block():
    seen = {}

    def run():
        with handling(signal.SIGUSR1, raise_caught) as installed:
            seen["installed"] = installed
            seen["handler"] = signal.getsignal(signal.SIGUSR1)

    before = signal.getsignal(signal.SIGUSR1)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"installed": False, "handler": before}
