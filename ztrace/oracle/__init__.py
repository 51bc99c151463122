"""Oracles: checks of the zsmalloc model against the running kernel."""
