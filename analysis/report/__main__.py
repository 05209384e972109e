"""``python -m analysis.report RESULTS_DIR ...``: see ``analysis.report``."""

import sys

from analysis.report import main

sys.exit(main())
