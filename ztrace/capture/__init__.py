"""Capture: BPF probes (``probes/``) to trace-format Parquet, safe to run on production hosts.

Modules: ``features`` (what the running kernel offers), ``loader`` (compile and attach the
BPF program), ``events`` (ring buffer records to numpy/Arrow), ``attribute`` (lock stacks to
lock kinds), ``session`` (the capture loop). The zram device lives in ``ztrace.host``.
Only ``session``/``loader`` import bcc, so ``ztrace doctor`` runs without it.
"""
