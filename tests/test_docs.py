"""Every pointer from the code into docs/ names a file and a section that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTER = re.compile(r'docs/([a-z_]+\.md)(?:,\s*"([^"]+)")?')


def test_docstring_pointers_into_docs_resolve():
    found = 0
    for path in sorted((ROOT / "mas_credit").rglob("*.py")) + sorted((ROOT / "tests").glob("*.py")):
        for name, section in POINTER.findall(path.read_text()):
            doc = ROOT / "docs" / name
            assert doc.is_file(), f"{path.name} points to docs/{name}, which does not exist"
            if section:
                headings = [line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")]
                assert any(h.startswith(section) for h in headings), (
                    f"{path.name}: docs/{name} has no section {section!r}"
                )
            found += 1
    assert found >= 8


def test_no_docstring_points_outside_the_repository():
    """The design notes outside the repository (DESIGN.md, ESTIMATORS.md) are not what a
    reader of this package has: docstrings point into docs/."""
    for path in sorted((ROOT / "mas_credit").rglob("*.py")):
        text = path.read_text()
        assert "DESIGN.md" not in text and "ESTIMATORS.md" not in text and "../shared/" not in text, path
