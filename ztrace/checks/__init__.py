"""Checks: hold the model against a real kernel (``ztrace check oracle|locks|lru-kernel``).

- ``oracle``: drive this machine's ``/dev/zram0`` and compare the zsmalloc model page for
  page (``ztrace check oracle``, alias ``ztrace oracle zram``).
- ``locks``: capture real class-lock contention and compare the replay's prediction
  (``ztrace check locks``, alias ``ztrace validate locks``).
- the LRU kernel check's logic is an LRU design concern and lives in
  ``ztrace.replay.lru.kernel_check``; ``ztrace check lru-kernel`` runs it.

Checks sit above capture and replay (they use both) and below the CLI; they use the one
zram device class in :mod:`ztrace.host.zram`.
"""
