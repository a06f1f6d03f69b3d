"""ctest's entry: pytest on the files given, exit 77 (skipped) without pytest.

    python3 run_pytest.py tests/test_agent.py [pytest options]
"""

import os
import sys

try:
    import pytest
except ImportError:
    print("python3-pytest is not installed (scripts/bootstrap installs it): skipped")
    sys.exit(77)

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:] + ["-q", "-p", "no:cacheprovider", "--rootdir", os.path.dirname(here)]
    sys.exit(pytest.main(args))
