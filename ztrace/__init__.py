"""ztrace: capture, replay and look at zsmalloc allocator traces."""

__version__ = "0.1.0"
