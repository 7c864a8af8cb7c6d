"""A pause of Python's cyclic garbage collector around allocation-heavy work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off inside the block (reference counting still frees memory).

    Parsing a large epic or planning it creates millions of small lists,
    tuples and dicts that all stay alive until the work is done. Each batch of
    new objects triggers a collection, and every few a full one that walks the
    whole heap: for 100k tasks that was a third of the time, finding nothing
    to free. Nested use and threads are safe: only the outermost block that
    found the collector on turns it back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
