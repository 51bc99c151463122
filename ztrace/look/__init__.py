"""Look: offline dashboards, terminal reports and exports of ztrace results and traces.

Everything here reads the results contract (``docs/results-format.md``) or a trace
(``ztrace/format.py``) and never changes them. Heavy modules (altair, rich) are imported by
the submodules that need them, so importing this package is cheap.
"""
