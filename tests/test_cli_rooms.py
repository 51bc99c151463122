"""The command groups that give each room its CLI: check (+ aliases), host, synth profiles."""

from __future__ import annotations

from pathlib import Path

from ztrace.format import read_trace


def test_check_group_and_its_aliases_share_one_definition(cli) -> None:
    r = cli("check", "--help")
    assert r.returncode == 0
    for sub in ("oracle", "locks", "lru-kernel"):
        assert sub in r.stdout
    from ztrace.cli import check, oracle, validate

    assert oracle.command.commands["zram"] is check.command.commands["oracle"]
    assert validate.command.commands["locks"] is check.command.commands["locks"]
    assert "--ops" in cli("oracle", "zram", "--help").stdout
    assert "--writers" in cli("validate", "locks", "--help").stdout


def test_check_lru_kernel_bad_dir_is_one_line(cli, tmp_path: Path) -> None:
    r = cli("check", "lru-kernel", str(tmp_path / "nope"), "--design", "none")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("ztrace: error: ") and r.stderr.count("\n") == 1


def test_check_locks_bad_rounds_is_one_line(cli) -> None:
    # parsed before the root check and before /dev/zram0 is touched
    for bad, problem in (("0", "0 is not in the range 1<=x<=50."), ("x", "'x' is not a valid")):
        r = cli("check", "locks", "--rounds", bad)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"ztrace: error: --rounds: {problem}"), r.stderr
        assert r.stderr.count("\n") == 1


def test_host_writers_refuses_a_missing_device(cli) -> None:
    r = cli("host", "writers", "--device", "zram-no-such", "--seconds", "0")
    assert r.returncode == 2
    assert r.stderr == "ztrace: error: /dev/zram-no-such: no such zram device " + (
        "(No such file or directory)\n"
    )


def test_synth_swap_profile_writes_schema_v2(cli, tmp_path: Path) -> None:
    r = cli("synth", "--profile", "zipf-steady", "--scale", "0.1", "--seed", "1", "-o",
            str(tmp_path / "s"), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    t = read_trace(tmp_path / "s")
    assert t.meta.schema_version == 2
    assert set(t.table.column("event").unique().to_pylist()) <= {
        "zswap_store",
        "zswap_load",
        "zswap_invalidate",
    }


def test_synth_rejects_options_of_the_other_generator(cli, tmp_path: Path) -> None:
    r = cli("synth", "--profile", "phase-change", "--events", "5", "-o", str(tmp_path / "x"))
    assert r.returncode == 2
    assert r.stderr == "ztrace: error: --events: does not apply to swap profile `phase-change`\n"
    assert not (tmp_path / "x").exists()
