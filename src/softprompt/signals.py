"""Installing a signal handler for the length of a block, where Python allows it."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def handling(signum: int, handler: Callable) -> Iterator[bool]:
    """Run the block with `handler` for `signum`, then put the previous handler back.

    A block that installs another handler for its own ending (e.g. ignoring the
    signal while its last message is printed) keeps it: the previous handler comes
    back only while `handler` is still the one installed.

    Yields whether the handler was installed: only the main thread may install one
    (a server or notebook that calls us from a worker thread keeps its own signals).
    """
    try:
        previous = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        yield False
        return
    try:
        yield True
    finally:
        if signal.getsignal(signum) is handler:
            signal.signal(signum, previous)
