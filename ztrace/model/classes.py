"""zsmalloc size classes, built exactly as the kernel's ``zs_create_pool()`` builds them.

Two generations of the "pages per zspage" rule exist:

* **≤ 6.2** (``legacy=True``): ``get_pages_per_zspage()`` tries 1..4 pages
  (``ZS_MAX_PAGES_PER_ZSPAGE = 1 << ZS_MAX_ZSPAGE_ORDER`` with order 2) and keeps the count
  with the best integer *used percentage* ``(zspage_size - waste) * 100 / zspage_size``
  (strictly greater wins, so ties keep the smaller count).
* **≥ 6.3** (``legacy=False``): ``calculate_zspage_chain_size()`` (commit "zsmalloc: rework
  zspage chain size selection", Jan 2023, merged for v6.3 together with
  ``CONFIG_ZSMALLOC_CHAIN_SIZE``, Kconfig range 4..16, default 8) returns 1 for power-of-two
  sizes and otherwise the count 1..chain_size with the *smallest waste in bytes*
  ``(i * PAGE_SIZE) % size`` (strictly smaller wins).

Everything else is common to both (mm/zsmalloc.c, all versions since v4.17):

* ``ZS_MIN_ALLOC_SIZE = MAX(32, ZS_MAX_PAGES_PER_ZSPAGE << PAGE_SHIFT >> OBJ_INDEX_BITS)``
  (32 on 64-bit: OBJ_INDEX_BITS is at least 12 there),
* ``ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS`` with ``CLASS_BITS = 8`` (16 bytes on 4K),
* ``ZS_SIZE_CLASSES = DIV_ROUND_UP(PAGE_SIZE - ZS_MIN_ALLOC_SIZE, DELTA) + 1`` (255 on 4K),
* class ``i`` has size ``min(ZS_MIN_ALLOC_SIZE + i * DELTA, PAGE_SIZE)``,
* ``zs_create_pool()`` walks ``i`` from high to low and lets class ``i`` *share* the
  previously built (larger) class when ``can_merge()``: same pages_per_zspage and same
  objs_per_zspage. Lookups of a merged index land on the larger class.
* ``huge_class_size`` is set, during that walk, from the first (largest) class with
  ``pages_per_zspage != 1 && objs_per_zspage != 1``, minus ``ZS_HANDLE_SIZE - 1`` because
  ``zs_malloc()`` adds ``ZS_HANDLE_SIZE`` before the class lookup. zram stores any page whose
  compressed length is ``>= huge_class_size`` uncompressed (PAGE_SIZE bytes).
* ``get_size_class_index(size)``: 0 for ``size <= ZS_MIN_ALLOC_SIZE``, else
  ``DIV_ROUND_UP(size - ZS_MIN_ALLOC_SIZE, DELTA)``, clamped to ``ZS_SIZE_CLASSES - 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ztrace.errors import ConfigError

#: sizeof(unsigned long) on 64-bit; zs_malloc() adds it to every request (handle header).
ZS_HANDLE_SIZE = 8
#: CLASS_BITS in mm/zsmalloc.c: 256 size-class steps per page.
CLASS_BITS = 8
#: ZS_MAX_ZSPAGE_ORDER in ≤6.2: at most 1 << 2 = 4 pages per zspage.
LEGACY_MAX_PAGES = 4
#: Kconfig range of CONFIG_ZSMALLOC_CHAIN_SIZE (mm/Kconfig, ≥6.3).
CHAIN_SIZE_MIN = 4
CHAIN_SIZE_MAX = 16
CHAIN_SIZE_DEFAULT = 8
#: OBJ_INDEX_BITS on x86_64 with 5-level paging (BITS_PER_LONG - (52 - PAGE_SHIFT)); only
#: used in ZS_MIN_ALLOC_SIZE, where any value >= 12 gives 32.
DEFAULT_OBJ_INDEX_BITS = 24


@dataclass(frozen=True)
class ClassTable:
    """The size-class table of one pool configuration.

    All per-class arrays are indexed by class index ``0 .. n_classes - 1`` and are plain
    int32 numpy arrays, so they can be handed to numba-compiled code as they are.
    ``merged_into[i]`` is the index of the class actually used for index ``i`` (``i`` itself
    for a distinct class); ``size``/``pages_per_zspage``/``objs_per_zspage`` of a merged index
    are those of its own computation, which equal the representative's pages/objs by
    construction of ``can_merge()``.
    """

    page_size: int
    chain_size: int  # max pages per zspage (4 for legacy)
    legacy: bool
    min_alloc_size: int
    size_delta: int
    n_classes: int
    huge_class_size: int
    size: np.ndarray
    pages_per_zspage: np.ndarray
    objs_per_zspage: np.ndarray
    merged_into: np.ndarray

    @property
    def distinct(self) -> np.ndarray:
        """Indices of the distinct (non-merged) classes, ascending."""
        return np.flatnonzero(self.merged_into == np.arange(self.n_classes))

    def size_class_index(self, size: int) -> int:
        """``get_size_class_index()`` of an already handle-adjusted size (no merge)."""
        idx = 0
        if size > self.min_alloc_size:
            idx = -(-(size - self.min_alloc_size) // self.size_delta)
        return min(self.n_classes - 1, idx)

    def class_for_malloc(self, size: int) -> int:
        """Class used by ``zs_malloc(pool, size)``: adds ZS_HANDLE_SIZE, then merges."""
        return int(self.merged_into[self.size_class_index(size + ZS_HANDLE_SIZE)])

    def is_huge(self, class_idx: int) -> bool:
        """A huge class holds one object in one page (create_page_chain(): SetZsHugePage)."""
        rep = int(self.merged_into[class_idx])
        return int(self.pages_per_zspage[rep]) == 1 and int(self.objs_per_zspage[rep]) == 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description (used by ``ztrace classes --json``)."""
        return {
            "chain_size": self.chain_size,
            "legacy": self.legacy,
            "page_size": self.page_size,
            "huge_class_size": self.huge_class_size,
            "classes": [
                {
                    "index": i,
                    "size": int(self.size[i]),
                    "pages_per_zspage": int(self.pages_per_zspage[i]),
                    "objs_per_zspage": int(self.objs_per_zspage[i]),
                    "merged_into": int(self.merged_into[i]),
                }
                for i in range(self.n_classes)
            ],
        }


def zspage_chain_size(class_size: int, chain_size: int, page_size: int = 4096) -> int:
    """``calculate_zspage_chain_size()`` (mm/zsmalloc.c, ≥6.3): least waste in bytes."""
    # Power-of-two sizes always divide the page exactly: one page, no search.
    if class_size & (class_size - 1) == 0:
        return 1
    best, min_waste = 1, None
    for i in range(1, chain_size + 1):
        waste = (i * page_size) % class_size
        if min_waste is None or waste < min_waste:  # strict: ties keep the shorter chain
            min_waste, best = waste, i
    return best


def legacy_pages_per_zspage(class_size: int, page_size: int = 4096) -> int:
    """``get_pages_per_zspage()`` (mm/zsmalloc.c, ≤6.2): best integer used-percentage."""
    max_usedpc, best = 0, 1
    for i in range(1, LEGACY_MAX_PAGES + 1):
        zspage_size = i * page_size
        waste = zspage_size % class_size
        usedpc = (zspage_size - waste) * 100 // zspage_size
        if usedpc > max_usedpc:  # strict: ties keep the smaller count
            max_usedpc, best = usedpc, i
    return best


#: Linux's page sizes run from 4 KiB to 256 KiB (PAGE_SHIFT 12..18: the 256 KiB pages of
#: powerpc 44x PPC_256K_PAGES and hexagon HEXAGON_PAGE_SIZE_256KB are the largest; the common
#: arches stop at 64 KiB). The table's int32 arrays would overflow long before 2^31.
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 4096, 1 << 18


def check_chain_size(chain_size: int) -> int:
    """Reject values outside CONFIG_ZSMALLOC_CHAIN_SIZE's Kconfig range with ConfigError."""
    if not isinstance(chain_size, int) or not CHAIN_SIZE_MIN <= chain_size <= CHAIN_SIZE_MAX:
        raise ConfigError(
            f"chain size {chain_size!r} out of range: CONFIG_ZSMALLOC_CHAIN_SIZE is "
            f"{CHAIN_SIZE_MIN}..{CHAIN_SIZE_MAX}"
        )
    return chain_size


def build_classes(
    chain_size: int | None = CHAIN_SIZE_DEFAULT,
    *,
    legacy: bool = False,
    page_size: int = 4096,
    obj_index_bits: int = DEFAULT_OBJ_INDEX_BITS,
) -> ClassTable:
    """Build the class table as ``zs_create_pool()`` does.

    ``legacy=True`` selects the ≤6.2 rule (max 4 pages, best used-percentage); then
    ``chain_size`` must be None or 4. Otherwise ``chain_size`` (default 8) is the
    CONFIG_ZSMALLOC_CHAIN_SIZE of a ≥6.3 kernel and must be within 4..16.
    """
    if not (MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE and page_size & (page_size - 1) == 0):
        raise ConfigError(
            f"page size {page_size}: want a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}"
        )
    if legacy:
        if chain_size not in (None, LEGACY_MAX_PAGES):
            raise ConfigError("--legacy (≤6.2) has a fixed maximum of 4 pages per zspage")
        max_pages = LEGACY_MAX_PAGES
    else:
        max_pages = check_chain_size(CHAIN_SIZE_DEFAULT if chain_size is None else chain_size)

    # ZS_MIN_ALLOC_SIZE = MAX(32, ZS_MAX_PAGES_PER_ZSPAGE << PAGE_SHIFT >> OBJ_INDEX_BITS)
    min_alloc = max(32, (max_pages * page_size) >> obj_index_bits)
    delta = page_size >> CLASS_BITS
    n = -(-(page_size - min_alloc) // delta) + 1  # DIV_ROUND_UP(...) + 1

    size = np.zeros(n, dtype=np.int32)
    pages = np.zeros(n, dtype=np.int32)
    objs = np.zeros(n, dtype=np.int32)
    merged = np.zeros(n, dtype=np.int32)
    huge_class_size = 0
    prev = -1
    # zs_create_pool(): "Iterate reversely, because, size of size_class that we want to use
    # for merging should be larger or equal to current size."
    for i in range(n - 1, -1, -1):
        s = min(min_alloc + i * delta, page_size)
        p = (
            legacy_pages_per_zspage(s, page_size)
            if legacy
            else zspage_chain_size(s, max_pages, page_size)
        )
        o = p * page_size // s
        size[i], pages[i], objs[i] = s, p, o
        # The first (largest) non-huge class fixes huge_class_size, minus the handle bytes
        # zs_malloc() adds before the lookup (ZS_HANDLE_SIZE - 1).
        if p != 1 and o != 1 and huge_class_size == 0:
            huge_class_size = s - (ZS_HANDLE_SIZE - 1)
        if prev >= 0 and pages[prev] == p and objs[prev] == o:  # can_merge()
            merged[i] = prev
            continue
        merged[i] = i
        prev = i
    return ClassTable(
        page_size=page_size,
        chain_size=max_pages,
        legacy=legacy,
        min_alloc_size=min_alloc,
        size_delta=delta,
        n_classes=n,
        huge_class_size=huge_class_size,
        size=size,
        pages_per_zspage=pages,
        objs_per_zspage=objs,
        merged_into=merged,
    )


@dataclass(frozen=True)
class KernelProfile:
    """Which zsmalloc generation a kernel release runs.

    * ``legacy_classes``: ≤6.2 get_pages_per_zspage() (else ≥6.3 chain size).
    * ``ratio_groups``: ≥6.4 fullness groups by in-use ratio (ZS_INUSE_RATIO_0..100, 12
      lists, ``insert_zspage()`` = plain ``list_add``) and the reworked ``__zs_compact()``
      (dst kept until full). Else the four groups ZS_EMPTY/ALMOST_EMPTY/ALMOST_FULL/FULL,
      the "higher ->inuse first" insert quirk and the old nested compaction loop.
    * ``alloc_before_free``: zram overwrite order (``ztrace.checks.oracle``): zs_malloc of the
      new object before zs_free of the old one.
    """

    release: tuple[int, int]
    legacy_classes: bool
    ratio_groups: bool
    alloc_before_free: bool


def parse_release(release: str) -> tuple[int, int]:
    """``"6.18.44-foo"`` → ``(6, 18)``; ConfigError when it does not look like a release."""
    m = re.match(r"^\s*(\d+)\.(\d+)", release)
    if not m:
        raise ConfigError(f"cannot parse kernel version {release!r} (want e.g. 6.1 or 6.18.2)")
    return int(m.group(1)), int(m.group(2))


def kernel_profile(release: str) -> KernelProfile:
    """The modelled generation for a kernel release string.

    Boundaries: chain size v6.3 ("zsmalloc: make zspage chain size configurable", Jan 2023);
    in-use-ratio groups, removal of the insert_zspage() ->inuse optimisation and the
    compaction rework v6.4 (patches of Feb 2023). zram: v6.14 ("zram: free slot memory early
    during write", Dec 2024) freed the old object before compressing; v6.17 ("zram: fix slot
    write race condition", Sep 2025) moved the free back after zs_malloc().
    """
    rel = parse_release(release)
    return KernelProfile(
        release=rel,
        legacy_classes=rel < (6, 3),
        ratio_groups=rel >= (6, 4),
        alloc_before_free=not ((6, 14) <= rel < (6, 17)),
    )
