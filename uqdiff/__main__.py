"""``python -m uqdiff``: the same as the ``uqdiff`` console script."""

from uqdiff.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
