"""Guest workload: allocate anonymous memory with a page mix and touch every page several times.

Run inside a memory cgroup whose memory.max is far below --mb, so the kernel swaps the pages
out (to zram or zswap) on the first pass and faults them back in on later passes, where each
page is read and dirtied again so it is stored anew. Stdlib only (it runs in the guest).

Page mix, chosen so every zsmalloc path gets traffic:
  * compressible pages: a random prefix of 256..3055 bytes and zeros after it, so compressed
    sizes spread over many size classes;
  * incompressible pages (--random-pct): random bytes, which zswap rejects (compress_poor) and
    zram stores as huge objects;
  * same-filled pages (--same-pct): one repeated byte, which zram and zswap keep without
    zsmalloc.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PAGE = 4096
CHUNK_PAGES = 1024  # 4 MiB per bytearray: big enough for few objects, small enough to build fast


def build_chunk(chunk_no: int, random_pct: int, same_pct: int) -> bytearray:
    buf = bytearray(CHUNK_PAGES * PAGE)
    rnd = os.urandom(CHUNK_PAGES * 1024 + PAGE)
    for i in range(CHUNK_PAGES):
        n = chunk_no * CHUNK_PAGES + i
        off = i * PAGE
        kind = n * 7919 % 100  # deterministic, evenly spread mix of the three kinds
        if kind < random_pct:
            buf[off : off + PAGE] = os.urandom(PAGE)
        elif kind < random_pct + same_pct:
            buf[off : off + PAGE] = bytes([0x5A]) * PAGE
        else:
            plen = 256 + (n * 997) % 2800
            start = (i * 1024) % (len(rnd) - plen)
            buf[off : off + plen] = rnd[start : start + plen]
    return buf


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300, help="memory to allocate (MiB)")
    ap.add_argument("--passes", type=int, default=2, help="touch passes after the first write")
    ap.add_argument("--random-pct", type=int, default=10)
    ap.add_argument("--same-pct", type=int, default=5)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    chunks = [build_chunk(c, a.random_pct, a.same_pct) for c in range(a.mb // 4)]
    print(f"alloc: wrote {len(chunks) * 4} MiB in {time.monotonic() - t0:.1f}s", flush=True)
    check = 0
    for p in range(a.passes):
        t = time.monotonic()
        for buf in chunks:
            # Read the last byte (swap-in) and change it, so the page is dirty and is stored
            # anew when reclaimed again; same-filled pages are only read, so they stay same.
            for off in range(PAGE - 1, len(buf), PAGE):
                v = buf[off]
                check += v
                if v != 0x5A:
                    buf[off] = p + 1
        print(f"alloc: pass {p + 1} in {time.monotonic() - t:.1f}s", flush=True)
    print(f"alloc: done {len(chunks) * 4} MiB, {a.passes} passes, check={check % 1000}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
