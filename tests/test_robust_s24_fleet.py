"""A fleet dataset that lacks a column the readers key rows by is one line, not a traceback.

Found by tests/test_fuzz.py (session 24): ``fleet dashboard`` on a ``fleet.parquet`` whose
first column (``host``) had been dropped, its metadata kept, raised polars'
ColumnNotFoundError. ``fleet.read_fleet`` now checks the identity columns, and the page
checks each kind's metric column.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.safety_util import assert_usage_error, cli, tree_hash
from tests.support.fleet import synthetic_fleet_dataset


def _without(src: Path, dst: Path, column: str) -> Path:
    """A copy of the fleet dataset ``src`` with ``column`` dropped and the metadata kept."""
    dst.mkdir()
    t = pq.read_table(src / "fleet.parquet")
    assert column in t.schema.names
    t = t.drop_columns([column]).replace_schema_metadata(t.schema.metadata)
    pq.write_table(t, dst / "fleet.parquet")
    return dst


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_fleet_dataset(tmp_path_factory.mktemp("f") / "fleet", hosts=3)


@pytest.mark.parametrize(
    ("column", "said"),
    [
        ("host", "no column host"),
        ("kind", "no column kind"),
        ("wait_ns_total", "no `wait_ns_total`"),
    ],
)
def test_fleet_dashboard_names_the_missing_column(
    fleet: Path, tmp_path: Path, column: str, said: str
) -> None:
    ds = _without(fleet, tmp_path / "ds", column)
    before = tree_hash(ds)
    p = cli("fleet", "dashboard", ds, "-o", tmp_path / "page")
    line = assert_usage_error(p, said)
    assert str(ds) in line
    assert not (tmp_path / "page").exists()
    assert tree_hash(ds) == before


def test_compare_names_the_missing_column(fleet: Path, tmp_path: Path) -> None:
    ds = _without(fleet, tmp_path / "ds", "host")
    p = cli("compare", ds, fleet)
    assert_usage_error(p, "no column host", str(ds))


def test_the_whole_dataset_still_draws(fleet: Path, tmp_path: Path) -> None:
    p = cli("fleet", "dashboard", fleet, "-o", tmp_path / "page")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "page").exists()
