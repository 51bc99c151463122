"""Issue 11: fuzz every command with mutated traces and results directories (Hypothesis).

Each example copies a valid input (a synthetic lock trace, a slice of the bundled real zswap
capture, a slice of the bundled host lock capture with its stacks.json, a lock replay, an LRU
replay, a sweep or a fleet sweep's directory), mutates it (types, nulls, extremes,
metadata including non-UTF-8 bytes, files of different captures mixed, truncation, junk),
runs one command on it in-process, and asserts: exit 0, or exit 2 with exactly one stderr
line ``ztrace: error: ...``; never a traceback; the input is byte-for-byte unchanged.

Bounded for ``make test``: a fixed number of examples, ``derandomize=True`` (the same examples
on every run and machine) and no example database. Set ``ZTRACE_FUZZ_EXAMPLES=N`` to run more.
Cases it found are kept in ``tests/corpus/fuzz_cases.jsonl`` and replayed by
:func:`test_corpus`, one line per case.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_cases import BASES, COMMANDS, OUT_MODES, build_bases, load_corpus, run_case

CORPUS = Path(__file__).parent / "corpus" / "fuzz_cases.jsonl"
EXAMPLES = int(os.environ.get("ZTRACE_FUZZ_EXAMPLES", "300"))
#: discovery mode (not for make test): append failing cases to this file instead of failing
COLLECT = os.environ.get("ZTRACE_FUZZ_COLLECT")


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bases(tmp_path_factory.mktemp("fuzz-bases"))


# ----------------------------------------------------------------------------- strategies

_INTS = st.sampled_from(
    [0, 1, -1, 7, 4095, 4096, 65535, 65536, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
)
_VALUES = st.one_of(st.none(), _INTS, st.sampled_from(["", "zs_malloc", "zs_free", "x" * 300]))
_META_KEYS = st.sampled_from(
    [
        "ztrace.schema_version",
        "ztrace.page_size",
        "ztrace.nr_cpus",
        "ztrace.zsmalloc_chain_size",
        "ztrace.kernel_release",
        "ztrace.lost_events",
        "ztrace.source",
        "ztrace.capture_start_ns",
        "ztrace.extra.pools",
        "ztrace.results_version",
        "ztrace.trace",
        "ztrace.seed",
    ]
)
_META_VALUES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"",
            b"0",
            b"-1",
            b"7",
            b"-4096",
            b"1",
            b"2",
            b"3",
            b"16384",
            b"100000",
            b"nan",
            b"1e400",
            b"9" * 40,
            b"\xff\xfe",
            b"6.1\xc3",
            b"capture",
            b"oracle",
            b"6.1.0-9-amd64",
        ]
    ).map(bytes.hex),
    st.binary(max_size=12).map(bytes.hex),
)
_JUNK_NAMES = st.sampled_from(
    [
        "part-00009.parquet",
        "summary.json",
        "locks_summary.parquet",
        "zz.parquet",
        ".hidden",
        "stacks.json",  # a capture's stack names (report --folded, the measured panel)
        "lock_classes.json",  # a capture's class lock indices, read from the kernel
        "fleet.json",  # a fleet sweep's manifest
        "summary-00000.parquet",  # an always-on capture's interval
    ]
)

_OP = st.one_of(
    st.tuples(
        st.just("cell"), st.integers(0, 3), st.integers(0, 15), st.integers(0, 10**6), _VALUES
    ),
    st.tuples(
        st.just("cast"),
        st.integers(0, 3),
        st.integers(0, 15),
        st.sampled_from(["int64", "float64", "string", "uint8", "int32"]),
    ),
    st.tuples(st.just("drop"), st.integers(0, 3), st.integers(0, 15)),
    st.tuples(st.just("meta"), st.integers(0, 3), _META_KEYS, _META_VALUES),
    st.tuples(st.just("mix"), st.sampled_from(sorted(BASES)), st.integers(0, 9)),
    st.tuples(st.just("empty"), st.integers(0, 3)),
    st.tuples(st.just("slice"), st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 50)),
    st.tuples(st.just("swaprows"), st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("truncate"), st.integers(0, 9), st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99])),
    st.tuples(st.just("junk"), _JUNK_NAMES, st.binary(max_size=64).map(bytes.hex)),
    st.tuples(st.just("rm"), st.integers(0, 9)),
    st.tuples(st.just("remanifest")),
).map(list)

_OPT = st.one_of(
    st.sampled_from(
        [
            "0",
            "-1",
            "1",
            "1e-300",
            "1e300",
            "nan",
            "inf",
            "-inf",
            "3.5",
            "100000",
            "2",
            "x",
            "4096",
            "2**64",
            "18446744073709551616",
            "10%",
            "0%",
            "150%",
            "64M",
            "1:4:1",
            "5%:15%:5%",
            "100,100",
            "50,10%",
            "",
            "  ",
        ]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    kinds = COMMANDS[cmd][0]
    case: dict[str, Any] = {"cmd": cmd}
    if kinds:
        case["input"] = draw(st.sampled_from(kinds))
        case["ops"] = draw(st.lists(_OP, min_size=0, max_size=3))
        if not BASES[case["input"]] and draw(st.booleans()):
            case["ops"].append(["remanifest"])  # half the results cases get past the manifest
    case["opts"] = draw(st.lists(_OPT, min_size=3, max_size=3))
    case["out"] = draw(st.sampled_from(OUT_MODES))
    return case


# ---------------------------------------------------------------------------------- tests


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_fuzz_every_command(bases: dict[str, Path], case: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="ztrace-fuzz-") as work:
        if not COLLECT:
            run_case(case, bases, Path(work))
            return
        try:  # discovery mode: keep going, write every failing case down
            run_case(case, bases, Path(work))
        except AssertionError as exc:
            with open(COLLECT, "a") as f:
                lines = str(exc).splitlines()
                why = f"{lines[0]} | {lines[-1]}" if lines else "?"
                f.write(json.dumps({**case, "why": why[:400]}) + "\n")


@pytest.mark.parametrize(
    "case",
    load_corpus(CORPUS),
    ids=[f"{i}-{c['cmd']}" for i, c in enumerate(load_corpus(CORPUS))],
)
def test_corpus(bases: dict[str, Path], case: dict[str, Any], tmp_path: Path) -> None:
    """Every case the fuzzer ever found, replayed exactly."""
    code, err = run_case(case, bases, tmp_path)
    want = case.get("expect")
    if want is not None:
        assert code == want, err


def test_corpus_is_json_lines() -> None:
    for line in CORPUS.read_text().splitlines():
        if line.strip():
            c = json.loads(line)
            assert c["cmd"] in COMMANDS
