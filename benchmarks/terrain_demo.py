"""The README demo on the pretrained terrain model, with its table written to benchmarks/results/terrain_demo/.

python benchmarks/terrain_demo.py            # budget 256 per design, seed 0
"""

import sys
from pathlib import Path

from uqdiff.cli.demo import main

if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "results" / "terrain_demo"
    main(["--quiet", "--out", str(out), *sys.argv[1:]])
