"""``python -m toyrelu``: the same as the ``toyrelu`` command."""

import sys

from toyrelu.cli import main

if __name__ == "__main__":
    sys.exit(main())
