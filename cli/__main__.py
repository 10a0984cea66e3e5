"""``python -m bsde.cli``: the same as the ``bsde`` command."""

from . import main

if __name__ == "__main__":
    main()
