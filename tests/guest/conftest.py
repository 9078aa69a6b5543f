"""Tests in this directory run INSIDE a user-mode-linux guest, through lab.uml (see tests/uml/).

A plain host `pytest` collects nothing here: the host kernel has no IPVS and these tests reconfigure the
kernel they run on. lab.uml sets IRONLB_IN_UML=1 in every guest command's environment; only then are the
test modules collected. Run them with:

    python -m lab.uml -- python -m pytest --confcutdir=tests/guest -p no:cacheprovider tests/guest
"""

import os

from lab.uml_job import GUEST_MARKER_ENV

collect_ignore_glob = [] if os.environ.get(GUEST_MARKER_ENV) == "1" else ["test_*.py"]
