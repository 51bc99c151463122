"""The design lists in ``--help``, read from the registries (a new design file appears here
without a line in the CLI)."""

from __future__ import annotations

import click


class DesignsHelp(click.Command):
    """A command whose ``--help`` ends with every registered lock and LRU design. The
    registries import numba, so they are read only when the help is printed."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from ztrace.replay.locks import listing
        from ztrace.replay.lru import REGISTRY

        with formatter.section("Lock designs (--locks NAME or NAME:N; default N shown)"):
            formatter.write_dl(
                [(spec, _with_aliases(text, aliases)) for spec, aliases, text in listing()]
            )
        with formatter.section("LRU designs (--lru)"):
            formatter.write_dl([(r.name, _with_aliases(r.summary, r.aliases)) for r in REGISTRY])


def _with_aliases(text: str, aliases: list[str] | tuple[str, ...]) -> str:
    return f"{text} [aliases: {', '.join(aliases)}]" if aliases else text
