"""Write ``tests/durations.json`` (each long test's measured seconds) from a pytest log with ``--durations=0``.

The suite starts its long tests first, longest first (``tests/conftest.py``), so that two workers share them
evenly and the short tests fill the ends. Refresh the file after adding or changing a long end-to-end test::

    make test PYTEST_ARGS=--durations=0 > /tmp/suite.log 2>&1
    python scripts/test_durations.py /tmp/suite.log
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "durations.json"
#: Tests shorter than this keep their place in the collection (they fill the ends).
LONG_S = 5.0
LINE = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S.*?)\s*$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="pytest output with --durations=0")
    parser.add_argument("--out", default=str(OUT), help=f"where to write (default: {OUT})")
    args = parser.parse_args()
    seconds: dict[str, float] = defaultdict(float)
    for line in Path(args.log).read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m:
            seconds[m.group(3)] += float(m.group(1))
    if not seconds:
        raise SystemExit(f"no durations in {args.log}: run pytest with --durations=0")
    long = {k: round(v, 1) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1]) if v >= LONG_S}
    Path(args.out).write_text(json.dumps(long, indent=1) + "\n")
    print(f"{len(long)} tests of {LONG_S} s or more ({sum(long.values()):.0f} s of {sum(seconds.values()):.0f} s) "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
