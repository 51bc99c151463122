"""A trace of which no allocation can be replayed is refused, not reported as "no contention".

Session 21's robustness sweep: a trace whose zs_malloc sizes were all out of range replayed
to 0 operations and 0 wait for every design, exit 0, and `compare` then ranked designs on it.
The same for every zs_malloc failed (handle 0), frees only, and `--sizes-from` a capture whose
sizes the kernel refuses. Some bad rows among good ones still replay, with one warning line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.safety_util import assert_usage_error, cli
from ztrace.format import TraceMeta, make_events, write_trace

META = TraceMeta(kernel_release="6.18.0", nr_cpus=2)


def _trace(tmp_path: Path, name: str, rows: list[tuple[str, int, int]]) -> Path:
    """A trace of (event, size_bytes, handle) rows, 1 ns apart."""
    out = tmp_path / name
    ev, size, handle = (list(c) for c in zip(*rows, strict=True))
    write_trace(
        out, make_events(ts_ns=range(len(rows)), event=ev, size_bytes=size, handle=handle), META
    )
    return out


M, F = "zs_malloc", "zs_free"


@pytest.mark.parametrize(
    ("rows", "command", "why"),
    [
        (
            [(M, 4097, 8), (M, 70000, 16), (F, 0, 8), (F, 0, 16)],
            ("replay", "--locks", "class,pool", "--json"),
            "2 zs_malloc rows have a size outside 1..4096 bytes; "
            "2 zs_free rows free handles never allocated",
        ),
        (
            [(M, 100, 0), (M, 200, 0), (M, 300, 0)],
            ("replay", "--locks", "class"),
            "3 zs_malloc calls failed in the kernel (handle 0)",
        ),
        (
            [(F, 0, 8), (F, 0, 16)],
            ("compare", "{t}", "--locks", "class,pool"),
            "there are no zs_malloc rows",
        ),
    ],
    ids=["sizes-out-of-range", "all-failed", "frees-only"],
)
def test_a_trace_with_nothing_to_replay_is_refused(
    tmp_path: Path, rows: list[tuple[str, int, int]], command: tuple[str, ...], why: str
) -> None:
    tr = _trace(tmp_path, "t", rows)
    args = [command[0], tr, *(str(tr) if a == "{t}" else a for a in command[1:])]
    line = assert_usage_error(cli(*args), tr)
    assert f"no allocation could be replayed: {why}" in line


def test_sizes_from_a_capture_of_refused_sizes_names_the_option(tmp_path: Path) -> None:
    sizeless = _trace(tmp_path, "sizeless", [(M, 0, 8), (M, 0, 16)])
    ref = _trace(tmp_path, "ref", [(M, 9000, 8)])
    line = assert_usage_error(
        cli("replay", sizeless, "--locks", "class", "--sizes-from", ref), "--sizes-from", ref
    )
    assert "2 zs_malloc rows have a size outside 1..4096 bytes" in line


def test_some_refused_sizes_replay_the_rest_with_one_warning(tmp_path: Path) -> None:
    tr = _trace(tmp_path, "half", [(M, 100, 8), (M, 5000, 16), (M, 200, 24), (F, 0, 8)])
    p = cli("replay", tr, "--locks", "class", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["counters"]["bad_alloc"] == 1
    assert doc["counters"]["mallocs"] == 3
    assert doc["locks"][0]["ops"] == 3  # two mallocs and the free, the refused one left out
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("ztrace: warning:")]
    assert warnings == [
        f"ztrace: warning: {tr}: 1 of 3 zs_malloc rows have a size the kernel refuses (0 or "
        "over the page size): counted as bad_alloc, not replayed"
    ]
