"""``python -m dirtyrl`` (what ``torchrun -m dirtyrl`` runs)."""

import sys

from dirtyrl.cli import main

sys.exit(main())
