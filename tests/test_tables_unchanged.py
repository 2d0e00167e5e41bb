"""Same config, same numbers: the micro run's tables match the checksums recorded in tests/data.

The list was recorded from the code before the workflow and package were
restructured, so a refactoring that changes any number, column, dtype or row
order fails here. A deliberate change of results rewrites the list (the
command is in its header) in the same commit that explains the change.
"""

import hashlib
from pathlib import Path

RECORDED = Path(__file__).parent / "data" / "micro_tables.sha256"


def recorded_sums(path: Path) -> dict[str, str]:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name: digest for digest, name in lines}


def test_micro_tables_are_byte_identical_to_the_recorded_ones(micro_run):
    tables = micro_run / "results" / "tables"
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tables.glob("*.parquet"))}
    expected = recorded_sums(RECORDED)
    assert sorted(found) == sorted(expected), f"tables written {sorted(found)} != recorded {sorted(expected)}"
    changed = [name for name in expected if found[name] != expected[name]]
    assert not changed, f"tables whose bytes changed: {changed}"


def test_recorded_list_skips_comments_and_is_not_empty(tmp_path):
    listing = tmp_path / "sums"
    listing.write_text("# header\n" + "0" * 64 + "  a.parquet\n")
    assert recorded_sums(listing) == {"a.parquet": "0" * 64}
    assert recorded_sums(RECORDED), "tests/data/micro_tables.sha256 lists no table"
