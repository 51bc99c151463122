"""Look: offline dashboards, terminal reports, tables and exports of results and traces.

Everything here reads results (``ztrace.format.read_results`` / a ``Results`` the CLI hands
over) or a trace (``ztrace.format.open_trace``) and never changes them. Look never replays,
captures or drives a device (import contracts in pyproject.toml; docs/architecture.md).
Heavy modules (altair, rich) are imported by the submodules that need them, so importing
this package is cheap.
"""
