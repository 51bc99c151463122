"""The real machine: this host's zram device (``host.zram``), for capture tests, checks and
benchmarks. Together with ``ztrace.vm`` (stock kernels under qemu) these are the rooms that
touch real kernels; nothing in ``format``, ``model``, ``replay`` or ``look`` does.
"""
