"""``ztrace check probewait`` refuses what is not a probewait run in one line (issue 10,
session 28). The check itself runs on a real guest run in tests/test_vm_probewait.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


def _run_dir(tmp_path: Path, tsv: str | None, log: str | None) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    if tsv is not None:
        (d / "probewait.tsv").write_text(tsv)
    if log is not None:
        (d / "zsstress.log").write_text(log)
    return d


@pytest.mark.parametrize(
    ("tsv", "log", "where", "problem"),
    [
        (None, None, "", "no probewait.tsv"),
        ("", "", "/probewait.tsv", "no steps"),
        ("kthread\tnone\t1.5\n", "", "/probewait.tsv:1", "expected step, background, start, end"),
        ("kthread\tnone\t1.5\t2.0\n", None, "", "no zsstress.log"),
        ("kthread\tnone\t1.5\t2.0\n", "zsstress: start pool=ff\n", "/zsstress.log", "free_lock"),
    ],
)
def test_what_is_not_a_probewait_run_is_one_line(
    tmp_path: Path, tsv: str | None, log: str | None, where: str, problem: str
) -> None:
    d = _run_dir(tmp_path, tsv, log)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    out = run_cli("check", "probewait", str(d))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"ztrace: error: {d}{where}: ") and problem in out.stderr
    assert out.stderr.count("\n") == 1
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # nothing changed
