"""Say on stderr when numba is about to compile the replay (no silent first-run stall, issue 15).

A cold numba disk cache costs tens of seconds on the first replay; nothing else tells the user.
numba fires its ``numba:compile`` event only after the disk cache missed (numba/core/
dispatcher.py: ``Dispatcher.compile`` tries ``self._cache.load_overload`` first), so listening
for it is exact: the message appears when, and only when, a compile really happens, whatever
the signature, design or stamp (:mod:`ztrace.replay._cache`) made the cache miss. Functions
without ``cache=True`` (numba's own helpers, structref accessors) compile in milliseconds on
every run and are ignored, so a warm cache prints nothing.

Always stderr, even when it is not a terminal (``--json`` stdout stays clean). Commands call
:func:`announce_compiles` once, before the first replay.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from numba.core import event
from numba.core.caching import NullCache

MESSAGE = "ztrace: compiling the replay core (first run only)…"

_lock = threading.Lock()
_state = {"installed": False, "said": False}


class _Listener(event.Listener):
    def on_start(self, ev: event.Event) -> None:
        dispatcher: Any = (ev.data or {}).get("dispatcher")
        if isinstance(getattr(dispatcher, "_cache", NullCache()), NullCache):
            return  # not disk-cached: compiles on every run, and fast
        with _lock:
            if _state["said"]:
                return
            _state["said"] = True
        print(MESSAGE, file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        pass


def announce_compiles() -> None:
    """From now on, the first compile of a disk-cached numba function prints :data:`MESSAGE`
    on stderr (once per process). Idempotent."""
    with _lock:
        if _state["installed"]:
            return
        _state["installed"] = True
    event.register("numba:compile", _Listener())
