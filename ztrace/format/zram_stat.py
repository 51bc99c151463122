"""Field names of zram's whitespace-separated sysfs stat files, defined once.

Documentation/admin-guide/blockdev/zram.rst (``mm_stat``, ``io_stat``, ``bd_stat``) and
Documentation/block/stat.rst (``stat``). Newer kernels append fields, so readers zip these
names with what they read and keep any extra values by position.

Standard library only, and importing nothing: the guest's counter dump
(:mod:`ztrace.vm.counters`) runs before ztrace's dependencies are importable and loads this
file by its path; everything else imports it as usual.
"""

MM_STAT: tuple[str, ...] = (
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "mem_limit",
    "mem_used_max",
    "same_pages",
    "pages_compacted",
    "huge_pages",
    "huge_pages_since",
)
IO_STAT: tuple[str, ...] = ("failed_reads", "failed_writes", "invalid_io", "notify_free")
BD_STAT: tuple[str, ...] = ("bd_count", "bd_reads", "bd_writes")
BLOCK_STAT: tuple[str, ...] = (
    "read_ios",
    "read_merges",
    "read_sectors",
    "read_ticks",
    "write_ios",
    "write_merges",
    "write_sectors",
    "write_ticks",
    "in_flight",
    "io_ticks",
    "time_in_queue",
    "discard_ios",
    "discard_merges",
    "discard_sectors",
    "discard_ticks",
    "flush_ios",
    "flush_ticks",
)
