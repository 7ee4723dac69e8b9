"""Writes `tests/quick.txt`, the integration tests `make test-quick` runs: those whose setup, call and teardown
took under 5 s in a full run's JUnit report, in modules whose shared fixtures are cheap too (one node id per line,
read by `pytest @tests/quick.txt`).

    python -m pytest tests -q -p no:cacheprovider --junitxml=/tmp/suite.xml   # (make test writes none)
    python tools/quick_tests.py /tmp/suite.xml

A module-scoped fixture's setup is booked on the first test that uses it: when that test is over the limit
and over the limit, no test of its module is quick (running the others alone would pay that setup anyway).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "quick.txt"
LIMIT_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path)
    parser.add_argument("--limit", type=float, default=LIMIT_S)
    args = parser.parse_args()
    tests: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for case in ET.parse(args.junit).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        if not module.startswith("tests/integration/"):
            continue
        if case.find("skipped") is not None or case.find("failure") is not None or case.find("error") is not None:
            continue
        tests[module].append((case.get("name", ""), float(case.get("time", "0"))))
    chosen = []
    for module, cases in sorted(tests.items()):
        if cases[0][1] >= args.limit:  # in file order: the first test carries the module's shared fixtures
            continue
        chosen += [f"{module}::{name}" for name, seconds in cases if seconds < args.limit]
    OUT.write_text("\n".join(chosen) + "\n", encoding="utf-8")  # one argument per line: `pytest @tests/quick.txt`
    print(f"wrote {OUT}: {len(chosen)} integration tests")


if __name__ == "__main__":
    main()
