"""``python -m xaijax.cli``: the ``xaijax`` command."""

import sys

from xaijax.cli import main

if __name__ == "__main__":
    sys.exit(main())
