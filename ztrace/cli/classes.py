"""``ztrace classes``: print zsmalloc's size-class table as the kernel builds it."""

from __future__ import annotations

import json

import click

from ztrace.errors import ConfigError
from ztrace.model.classes import (
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    build_classes,
    check_chain_size,
    kernel_profile,
)


@click.command(name="classes")
@click.option(
    "--chain-size",
    type=int,
    default=None,
    help="CONFIG_ZSMALLOC_CHAIN_SIZE (4..16, ≥6.3 kernels). Default 8.",
)
@click.option("--legacy", is_flag=True, help="≤6.2 rule: at most 4 pages, best used-percentage.")
@click.option(
    "--kernel",
    "kernel",
    default=None,
    metavar="VERSION",
    help="Pick the rule from a kernel version, e.g. 6.1 (legacy) or 6.18.",
)
@click.option(
    "--page-size",
    type=int,
    default=4096,
    help=f"PAGE_SIZE in bytes: a power of two, {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE} (Linux's range).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def command(
    chain_size: int | None, legacy: bool, kernel: str | None, page_size: int, as_json: bool
) -> None:
    """Print the size classes of a zsmalloc pool (zs_create_pool()).

    merged_into is the index of the class actually used for an index (itself when the class
    is distinct); huge_class_size is the zram threshold for storing a page uncompressed.
    """
    if not (MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE and page_size & (page_size - 1) == 0):
        # 2^31 passed a bare power-of-two check and overflowed the table's int32 arrays
        raise ConfigError(
            f"--page-size {page_size}: want a power of two from {MIN_PAGE_SIZE} to "
            f"{MAX_PAGE_SIZE} (Linux's 4 KiB..256 KiB)"
        )
    if chain_size is not None:
        check_chain_size(chain_size)
    if kernel is not None and kernel_profile(kernel).legacy_classes:
        if chain_size is not None:
            raise ConfigError(f"--kernel {kernel}: no configurable chain size (≤6.2)")
        legacy = True
    if legacy and chain_size is not None:
        raise ConfigError("--legacy: ≤6.2 has a fixed maximum of 4 pages; drop --chain-size")
    table = build_classes(None if legacy else (chain_size or 8), legacy=legacy, page_size=page_size)
    data = table.as_dict()
    if as_json:
        click.echo(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    rule = "≤6.2 legacy (max 4 pages)" if legacy else f"chain size {table.chain_size}"
    title = (
        f"zsmalloc size classes — {rule}"
        f", page {page_size}, huge_class_size {table.huge_class_size}, "
        f"{len(table.distinct)} distinct of {table.n_classes}"
    )
    t = Table(title=title)
    for col in ("index", "size", "pages/zspage", "objs/zspage", "merged_into", "waste/zspage"):
        t.add_column(col, justify="right")
    classes: list[dict[str, int]] = data["classes"]  # type: ignore[assignment]
    for c in classes:
        waste = c["pages_per_zspage"] * page_size - c["objs_per_zspage"] * c["size"]
        merged = "" if c["merged_into"] == c["index"] else str(c["merged_into"])
        t.add_row(
            str(c["index"]),
            str(c["size"]),
            str(c["pages_per_zspage"]),
            str(c["objs_per_zspage"]),
            merged,
            str(waste),
        )
    Console().print(t)
