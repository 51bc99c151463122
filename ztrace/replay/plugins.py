"""Design plug-ins: a design package finds its design modules itself.

``replay/locks/`` and ``replay/lru/`` each import every public module of their own folder
when they are imported (:func:`import_public_modules`); a design module registers its design
at import with the package's ``register``, and helper modules (names starting with ``_``,
or in ``replay/lru/`` the ones that register nothing) are imported alongside. So a new design
is one file dropped into the folder: no list to extend. Each design declares a ``rank``
(:func:`check_rank`), so the listing order, and the order of an "all designs" run, is
fixed by the designs themselves, not by file names or import order.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from types import ModuleType


def import_public_modules(package: str, path: Iterable[str]) -> list[ModuleType]:
    """Import every module of ``package`` (its ``__path__``) whose name has no leading ``_``,
    in name order, and return them."""
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package}.{n}") for n in names]


def check_rank(kind: str, name: str, rank: int, ranks: Mapping[str, int]) -> None:
    """Refuse a ``rank`` that another design of ``ranks`` (name -> rank) already holds: the
    listing order must not depend on which file was imported first."""
    for other, r in ranks.items():
        if r == rank and other != name:
            raise ValueError(f"{kind} design `{name}`: rank {rank} already taken by `{other}`")
