"""``python -m immortus``: the ``immortus`` command."""

from immortus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
