"""``python -m device`` runs the ``xephy-device`` command line."""

import sys

from device.cli import main

sys.exit(main())
