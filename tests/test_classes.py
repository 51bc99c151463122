"""Size classes against an independent transcription of zs_create_pool() (mm/zsmalloc.c).

The reference below is written from the kernel source in the kernel's own terms (a list of
``struct size_class``-like dicts, ``pool->size_class[]`` pointing at shared objects), not
from ztrace's implementation, and a few entries are also worked out by hand.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ztrace.errors import ConfigError
from ztrace.model.classes import build_classes, kernel_profile

PAGE_SIZE = 4096
ZS_HANDLE_SIZE = 8


def _kernel_reference(max_pages: int, legacy: bool) -> tuple[list[dict], int]:
    """zs_create_pool() for 4K pages: returns (pool->size_class[] as dicts, huge_class_size)."""
    zs_min_alloc_size = 32
    zs_size_class_delta = PAGE_SIZE >> 8
    zs_size_classes = -(-(PAGE_SIZE - zs_min_alloc_size) // zs_size_class_delta) + 1

    def calculate_zspage_chain_size(class_size: int) -> int:
        if class_size & (class_size - 1) == 0:  # is_power_of_2()
            return 1
        min_waste, chain = 1 << 62, 1
        for i in range(1, max_pages + 1):
            waste = (i * PAGE_SIZE) % class_size
            if waste < min_waste:
                min_waste, chain = waste, i
        return chain

    def get_pages_per_zspage(class_size: int) -> int:
        max_usedpc, order = 0, 1
        for i in range(1, 4 + 1):
            zspage_size = i * PAGE_SIZE
            waste = zspage_size % class_size
            usedpc = (zspage_size - waste) * 100 // zspage_size
            if usedpc > max_usedpc:
                max_usedpc, order = usedpc, i
        return order

    pool: list[dict | None] = [None] * zs_size_classes
    prev = None
    huge_class_size = 0
    for i in reversed(range(zs_size_classes)):
        size = zs_min_alloc_size + i * zs_size_class_delta
        size = min(size, PAGE_SIZE)
        ppz = get_pages_per_zspage(size) if legacy else calculate_zspage_chain_size(size)
        opz = ppz * PAGE_SIZE // size
        if ppz != 1 and opz != 1 and not huge_class_size:
            huge_class_size = size - (ZS_HANDLE_SIZE - 1)
        if prev is not None and prev["pages"] == ppz and prev["objs"] == opz:
            pool[i] = prev
            continue
        cls = {"size": size, "index": i, "pages": ppz, "objs": opz}
        pool[i] = cls
        prev = cls
    return pool, huge_class_size  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("chain", "legacy"), [(4, False), (8, False), (16, False), (None, True), (5, False)]
)
def test_matches_kernel_reference(chain: int | None, legacy: bool) -> None:
    ref, huge = _kernel_reference(4 if legacy else chain, legacy)  # type: ignore[arg-type]
    t = build_classes(chain, legacy=legacy)
    assert t.n_classes == len(ref) == 255
    assert t.huge_class_size == huge
    for i, cls in enumerate(ref):
        assert int(t.merged_into[i]) == cls["index"], i
        rep = cls["index"]
        assert int(t.pages_per_zspage[rep]) == cls["pages"]
        assert int(t.objs_per_zspage[rep]) == cls["objs"]
        assert int(t.size[rep]) == cls["size"]
    assert len(t.distinct) == len({id(c) for c in ref})


def test_hand_worked_entries() -> None:
    # chain 8, class 5 (size 112): waste for 1..8 pages = 64,16,80,32,96,48,0,.. -> 7 pages
    # holding 7*4096/112 = 256 objects.
    t8 = build_classes(8)
    assert (int(t8.size[5]), int(t8.pages_per_zspage[5]), int(t8.objs_per_zspage[5])) == (
        112,
        7,
        256,
    )
    # size 3632: waste 8*4096 - 9*3632 = 80 is the minimum -> 8 pages, 9 objects, and it is
    # the largest non-huge class: huge_class_size = 3632 - 7 = 3625 (zram: comp_len >= 3625
    # is stored as a huge PAGE_SIZE object).
    assert (int(t8.pages_per_zspage[225]), int(t8.objs_per_zspage[225])) == (8, 9)
    assert t8.huge_class_size == 3625
    assert int(t8.merged_into[226]) == 254  # 3648 B: 1 page, 1 object -> the huge class
    # power-of-two sizes: one page
    assert int(t8.pages_per_zspage[t8.size_class_index(2048)]) == 1
    # legacy (≤6.2) class 112: used% for 1..4 pages = 98, 99, 99, 99 -> first 99 wins: 2 pages
    tl = build_classes(None, legacy=True)
    assert (int(tl.pages_per_zspage[5]), int(tl.objs_per_zspage[5])) == (2, 73)
    # chain 4: 3264 (4 pages, 5 objects, waste 64) is the largest non-huge class
    t4 = build_classes(4)
    assert t4.huge_class_size == 3264 - 7
    # chain 16 has more distinct classes than 8, which has more than 4
    assert len(build_classes(16).distinct) > len(t8.distinct) > len(t4.distinct)


def test_size_class_lookup() -> None:
    t = build_classes(8)
    # get_size_class_index(): <= 32 -> 0; DIV_ROUND_UP(size - 32, 16); clamp at 254
    assert t.size_class_index(1) == 0
    assert t.size_class_index(32) == 0
    assert t.size_class_index(33) == 1
    assert t.size_class_index(48) == 1
    assert t.size_class_index(49) == 2
    assert t.size_class_index(4096) == 254
    assert t.size_class_index(4104) == 254
    # zs_malloc adds the 8-byte handle first
    assert t.class_for_malloc(24) == 0
    assert t.class_for_malloc(25) == 1
    assert t.class_for_malloc(3624) == 225
    assert t.class_for_malloc(3625) == 254
    assert t.is_huge(t.class_for_malloc(4096))
    assert not t.is_huge(t.class_for_malloc(3624))


@pytest.mark.parametrize("bad", [0, 3, 17, -1])
def test_chain_size_range(bad: int) -> None:
    with pytest.raises(ConfigError):
        build_classes(bad)


def test_kernel_profiles() -> None:
    assert kernel_profile("6.1.0-13-amd64").legacy_classes
    assert not kernel_profile("6.1").ratio_groups
    p63 = kernel_profile("6.3")
    assert not p63.legacy_classes and not p63.ratio_groups
    p618 = kernel_profile("6.18.44-fc")
    assert not p618.legacy_classes and p618.ratio_groups and p618.alloc_before_free
    assert not kernel_profile("6.15").alloc_before_free
    with pytest.raises(ConfigError):
        kernel_profile("banana")


def test_cli_json() -> None:
    from ztrace.cli.main import cli

    r = CliRunner().invoke(cli, ["classes", "--chain-size", "8", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["chain_size"] == 8 and d["huge_class_size"] == 3625
    assert len(d["classes"]) == 255
    c = d["classes"][225]
    assert c == {
        "index": 225,
        "size": 3632,
        "pages_per_zspage": 8,
        "objs_per_zspage": 9,
        "merged_into": 225,
    }
    assert d["classes"][226]["merged_into"] == 254
    r = CliRunner().invoke(cli, ["classes", "--legacy", "--json"])
    assert json.loads(r.output)["huge_class_size"] == 3257
    r = CliRunner().invoke(cli, ["classes", "--kernel", "6.1", "--json"])
    assert json.loads(r.output)["legacy"] is True
    r = CliRunner().invoke(cli, ["classes"])
    assert r.exit_code == 0 and "3632" in r.output


def test_cli_rejects_chain_size() -> None:
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "ztrace", "classes", "--chain-size", "17", "--json"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ztrace: error: chain size 17")
