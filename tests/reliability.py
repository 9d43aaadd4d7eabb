"""The README's reliability table, generated from the test suite.

Each row is a test marked `@pytest.mark.reliability(case, what_you_see)`; the row cites
that test, so the table says only what a test checks. `python -m tests.reliability`
prints the table; `--write` puts it into README.md between its two marker lines;
`test_reliability_table.py` fails when the README's copy is out of date.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- reliability table: generated from the tests by `python -m tests.reliability --write` -->"
END = "<!-- end of the reliability table -->"


def _is_reliability_mark(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "reliability"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "mark"
    )


def rows(tests_dir: Path = ROOT / "tests") -> list[tuple[str, str, str]]:
    """(case, what you see, file::test) for every marked test, in file then line order."""
    found = []
    for path in sorted(tests_dir.glob("test_*.py")):
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in filter(_is_reliability_mark, node.decorator_list):
                if len(deco.args) != 2 or not all(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) for a in deco.args
                ):
                    raise ValueError(
                        f"{path.name}::{node.name}: reliability(case, what_you_see) takes two string literals"
                    )
                found.append((deco.args[0].value, deco.args[1].value, f"{path.name}::{node.name}"))
    return found


def table(found: list[tuple[str, str, str]]) -> str:
    lines = ["| case | what you see | test |", "|---|---|---|"]
    lines += [f"| {case} | {seen} | `{test}` |" for case, seen, test in found]
    return "\n".join(lines)


def readme_with_table(readme: str, generated: str) -> str:
    """README text with the generated table between the marker lines."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md lacks the marker lines {BEGIN!r} and {END!r}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv: list[str]) -> int:
    generated = table(rows())
    if argv[1:] == ["--write"]:
        path = ROOT / "README.md"
        path.write_text(readme_with_table(path.read_text(), generated))
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
