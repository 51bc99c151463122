"""Guest workload input: generate C sources that compile like kernel translation units.

A kernel object's cc1 spends most of its memory on what it includes: thousands of struct
declarations and static inline helpers from shared headers, of which the .c file uses a few,
plus a handful of functions that -O2 inlines, unrolls and vectorises. This writes the same
shape, deterministically (--seed), so a run is repeatable without the kernel tree (the guest
image has gcc-12 but no kernel sources and no make):

  DIR/kb.h      --header-funcs static inline helpers and --header-structs structs, shared;
  DIR/fNNN.c    --files units, each including kb.h and defining --funcs functions that call
                a seeded selection of the helpers (inlined at -O2: the unit's IR, and cc1's
                memory, grow with them).

Stdlib only (it runs in the guest).
"""

from __future__ import annotations

import argparse
import os
import random


def header(rng: random.Random, n_structs: int, n_funcs: int) -> str:
    out = ["#ifndef KB_H\n#define KB_H\n"]
    for s in range(n_structs):
        fields = "".join(
            f"  {rng.choice(['int', 'long', 'unsigned', 'short', 'char *'])} f{i};\n"
            for i in range(rng.randint(4, 16))
        )
        out.append(f"struct kb_s{s} {{\n{fields}  struct kb_s{s} *next;\n}};\n")
    for f in range(n_funcs):
        a, b, c = (rng.randint(1, 97) for _ in range(3))
        out.append(
            f"static inline long kb_h{f}(long *v, int n, long k)\n{{\n"
            f"  long acc = k ^ {a};\n"
            f"  for (int i = 0; i < n; i++) {{\n"
            f"    switch ((v[i] + i) & 3) {{\n"
            f"    case 0: acc += v[i] * {b}; break;\n"
            f"    case 1: acc ^= v[i] >> {a % 7 + 1}; break;\n"
            f"    case 2: acc -= v[(i + {c}) % n] + {c}; break;\n"
            f"    default: acc = (acc << 1) | (v[i] & {b});\n"
            f"    }}\n"
            f"    v[i] = acc + i;\n"
            f"  }}\n"
            f"  return acc;\n}}\n"
        )
    out.append("#endif\n")
    return "".join(out)


def unit(rng: random.Random, u: int, n_funcs: int, n_helpers: int, calls: int) -> str:
    out = [f'#include "kb.h"\n\nlong kb_u{u}_state[64];\n']
    for f in range(n_funcs):
        body = "".join(
            f"  acc += kb_h{rng.randrange(n_helpers)}(buf, n, acc + {j});\n" for j in range(calls)
        )
        out.append(
            f"long kb_u{u}_f{f}(long *src, int n)\n{{\n"
            f"  long buf[256], acc = {f};\n"
            f"  if (n > 256) n = 256;\n"
            f"  for (int i = 0; i < n; i++) buf[i] = src[i] * {rng.randint(2, 99)};\n"
            f"{body}"
            f"  kb_u{u}_state[{f % 64}] += acc;\n"
            f"  return acc;\n}}\n"
        )
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--funcs", type=int, default=6, help="functions per unit")
    ap.add_argument("--calls", type=int, default=8, help="inlined helper calls per function")
    ap.add_argument("--header-funcs", type=int, default=1500)
    ap.add_argument("--header-structs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "kb.h"), "w") as f:
        f.write(header(rng, a.header_structs, a.header_funcs))
    for u in range(a.files):
        with open(os.path.join(a.dir, f"f{u:03d}.c"), "w") as f:
            f.write(unit(rng, u, a.funcs, a.header_funcs, a.calls))
    print(f"kbuild_gen: {a.files} units in {a.dir}")


if __name__ == "__main__":
    main()
