"""Classify a CSV file and write the results, as `udtc classify --input ... --output ...` does.

    python examples/classify_file.py [input.csv] [output.csv]
"""

import sys
from pathlib import Path

from udtc.cli import main

here = Path(__file__).parent
source = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "data" / "headlines.csv"
target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("headlines.classified.csv")
sys.exit(main(["classify", "--input", str(source), "--labels", "sports,politics,business,technology,entertainment",
               "--output", str(target), "--overwrite"]))
