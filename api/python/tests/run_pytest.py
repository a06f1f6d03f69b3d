"""ctest's entry: pytest on the files given, exit 77 (skipped) without
pytest, or when every test skipped itself (ctest's SKIP_RETURN_CODE: a run
that proved nothing is not a pass).

    python3 run_pytest.py tests/test_agent.py [pytest options]
"""

import os
import sys

try:
    import pytest
except ImportError:
    print("python3-pytest is not installed (scripts/bootstrap installs it): skipped")
    sys.exit(77)


class Outcomes:
    def __init__(self) -> None:
        self.ran = 0
        self.skipped = 0

    def pytest_runtest_logreport(self, report: "pytest.TestReport") -> None:
        if report.skipped:
            self.skipped += 1
        elif report.when == "call":
            self.ran += 1


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:] + ["-q", "-rs", "-p", "no:cacheprovider", "--rootdir",
                           os.path.dirname(here)]
    outcomes = Outcomes()
    rc = pytest.main(args, plugins=[outcomes])
    if rc == 0 and outcomes.ran == 0 and outcomes.skipped > 0:
        print("every test skipped itself (reasons above): exit 77")
        rc = 77
    sys.exit(rc)
