"""Moved: the tracker export is the study's, ``python -m study.export`` (``study/export.py``).

This alias keeps ``python -m analysis.export`` working for one release; it says where the
command went and runs it.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    print("note: python -m analysis.export moved to python -m study.export; this alias goes in "
          "the next release", file=sys.stderr)
    from study.export import main

    sys.exit(main())
