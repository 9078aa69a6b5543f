"""`python -m dataplane`: see dataplane.daemon."""

import sys

from dataplane.daemon import main

sys.exit(main())
