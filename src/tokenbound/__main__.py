"""`python -m tokenbound` (also the entry point for `torchrun -m tokenbound`)."""

import sys

from tokenbound.cli import main

sys.exit(main())
