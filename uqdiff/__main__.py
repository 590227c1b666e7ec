"""``python -m uqdiff``: the same as the ``uqdiff`` console script."""

from uqdiff.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
