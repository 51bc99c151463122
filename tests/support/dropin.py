"""Drop module files into a package for one test (the design plug-in tests)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def drop_in(monkeypatch: pytest.MonkeyPatch, pkg: ModuleType, folder: Path) -> Callable[..., None]:
    """Put ``folder`` on ``pkg.__path__`` (a second folder of the package) for this test;
    returns ``write(name, source)``, which writes module ``name`` there."""
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(folder)])

    def write(name: str, source: str) -> None:
        (folder / f"{name}.py").write_text(source)

    return write


def forget(pkg: ModuleType, *names: str) -> None:
    """Unload the dropped-in modules ``names`` of ``pkg`` (a test's clean-up)."""
    for m in names:
        sys.modules.pop(f"{pkg.__name__}.{m}", None)
        if hasattr(pkg, m):
            delattr(pkg, m)
