"""``python -m cpuformer``: the command-line interface (see cpuformer.cli)."""

import sys

from .cli import main

sys.exit(main())
