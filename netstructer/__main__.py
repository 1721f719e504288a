# -*- test-case-name: tests.test_cli -*-
"""
Run the C{netstructer} command as C{python -m netstructer}.
"""

from __future__ import annotations

import sys

from netstructer.cli import main

if __name__ == "__main__":
    sys.exit(main())
