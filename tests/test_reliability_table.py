"""The README's reliability table is the one the tests generate (tests/reliability.py)."""

from .reliability import ROOT, readme_with_table, rows, table


def test_the_readme_table_is_generated_from_the_marked_tests():
    found = rows()
    assert len(found) >= 15, "every row of the reliability table is a marked test"
    assert len({test for _, _, test in found}) == len(found)
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme, table(found)) == readme, "run: python -m tests.reliability --write"


def test_a_row_cites_its_test_by_file_and_name(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.reliability('a case', 'one line')\ndef test_it():\n    pass\n\n"
        "def test_unmarked():\n    pass\n"
    )
    assert rows(tmp_path) == [("a case", "one line", "test_x.py::test_it")]
    assert table(rows(tmp_path)).splitlines()[-1] == "| a case | one line | `test_x.py::test_it` |"
