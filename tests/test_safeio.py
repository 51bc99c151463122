"""The safe writers and the manifest (issue 11), one behaviour per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format.safeio import (
    MANIFEST,
    atomic_dir,
    atomic_file,
    check_output,
    verify_manifest,
)


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(out) as f:
        f.write("half")
        raise RuntimeError("writer died")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left
    with atomic_file(out) as f:
        f.write("new\n")
    assert out.read_text() == "new\n"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # umask mode, not mkstemp's 0600


def test_atomic_file_never_follows_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in (".a.json.tmp", ".a.json.0.tmp"):
        (tmp_path / name).symlink_to(victim)
    with atomic_file(tmp_path / "a.json") as f:
        f.write("x")
    assert victim.read_text() == "precious\n"


def test_atomic_dir_refuses_without_force_and_replaces_whole_with_it(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with pytest.raises(ConfigError, match="--force"), atomic_dir(out) as d:
        (d / "new.bin").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["old.bin"]
    with atomic_dir(out, force=True) as d:
        (d / "new.bin").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "new.bin"]
    verify_manifest(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # old one deleted, no temps


def test_atomic_dir_failure_leaves_the_old_directory(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with atomic_dir(out) as d:
        (d / "a.bin").write_text("a")
    with pytest.raises(KeyError), atomic_dir(out, force=True) as d:
        (d / "b.bin").write_text("b")
        raise KeyError("writer died")
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", MANIFEST]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_check_output_refuses_the_input(tmp_path: Path, where: str) -> None:
    trace = tmp_path / "t"
    trace.mkdir()
    target = {"same": trace, "inside": trace / "x", "parent": tmp_path}[where]
    with pytest.raises(ConfigError, match="input"):
        check_output(target, [trace])
    link = tmp_path / "link"
    link.symlink_to(trace)
    with pytest.raises(ConfigError, match="input"):
        check_output(link / "x", [trace])  # the same directory under another name


def test_manifest_names_what_is_wrong(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with atomic_dir(out) as d:
        (d / "a.bin").write_text("a")
        (d / "summary.json").write_text("{}")
    (out / "a.bin").write_text("b")
    with pytest.raises(TraceFormatError, match=r"a\.bin: changed"):
        verify_manifest(out)
    (out / "a.bin").write_text("a")
    (out / "extra.bin").write_text("x")
    with pytest.raises(TraceFormatError, match=r"extra\.bin: not listed"):
        verify_manifest(out)
    os.unlink(out / "extra.bin")
    os.unlink(out / "summary.json")
    with pytest.raises(TraceFormatError, match=r"summary\.json: listed in the manifest but"):
        verify_manifest(out)
    os.unlink(out / MANIFEST)
    with pytest.raises(TraceFormatError, match="incomplete"):
        verify_manifest(out)
