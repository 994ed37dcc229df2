"""Strip notebook outputs before committing, keeping those of ``# NBVAL_CHECK_OUTPUT`` cells.

    .venv/bin/jupyter nbconvert --to notebook --execute --inplace notebooks/02_*.ipynb
    .venv/bin/python notebooks/strip_outputs.py notebooks/*.ipynb

nbval compares the kept outputs (``--nbval-lax``); everything else (plots, tables, the base64
audio of the players) would only bloat the repository.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MARK = "NBVAL_CHECK_OUTPUT"


def strip(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for n, cell in enumerate(code, start=1):
        cell["metadata"].pop("execution", None)
        if MARK in "".join(cell["source"]):
            # nbval refuses a reference cell with outputs but no execution count: number the
            # kept cells by their position, so the file does not change from run to run
            cell["execution_count"] = n
            for out in cell["outputs"]:
                if "execution_count" in out:
                    out["execution_count"] = n
        else:
            cell["execution_count"] = None
            cell["outputs"] = []
    nb["metadata"].pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        strip(Path(arg))
        print("stripped", arg)
