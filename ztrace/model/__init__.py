"""Kernel-exact models of the zsmalloc allocator (size classes and the pool itself).

* :mod:`ztrace.model.classes` builds the size-class table exactly as ``zs_create_pool()``.
* :mod:`ztrace.model.zsmalloc` is a numba-compiled pool model (zspages, fullness lists,
  compaction) that replays ``zs_malloc`` / ``zs_free`` / ``zs_compact`` page-exactly.

See ``docs/model.md`` for every modelled rule and the kernel function it comes from.
"""
