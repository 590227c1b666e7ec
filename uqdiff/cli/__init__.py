"""The command line (``uqdiff estimate | compare | evaluate``), its configs, runs, reports, plots and the demo."""

from uqdiff.cli.main import main

__all__ = ["main"]
