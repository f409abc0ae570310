"""scripts/seq_step_parts.py: every part of a Seq-MNIST step is timed with the runner's own
code (a statement that raised would end the script) and reported in microseconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import seq_step_parts  # noqa: E402


def test_every_part_is_timed_and_written(tmp_path, capsys):
    out = tmp_path / "parts.json"
    assert seq_step_parts.main(["--min-run-time", "0.001", "--json", str(out)]) == 0
    parts = json.loads(out.read_text())
    assert {"step, 10 examples (naive)", "reservoir add 10, capacity 500",
            "step, 20 examples", "step 10 + online EWC penalty"} <= set(parts)
    assert all(us > 0 for us in parts.values())
    printed = capsys.readouterr().out
    assert all(name in printed for name in parts)
