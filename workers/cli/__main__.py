"""``python -m workers.cli``: the ``gnnrec`` command (how worker subprocesses are started)."""
import sys

from workers.cli import main

sys.exit(main())
