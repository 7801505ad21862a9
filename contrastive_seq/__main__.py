"""``python -m contrastive_seq`` runs the command line."""

import sys

from contrastive_seq.cli import main

sys.exit(main())
