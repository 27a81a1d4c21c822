"""`python -m elasticlm` (and `torchrun -m elasticlm ...` for data-parallel training)."""

import sys

from elasticlm.cli import main

sys.exit(main())
