"""Write a benchmark's result record as JSON, stamped with the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> str:
    """e.g. 'x86_64, 2 cores'."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_result(out: str | Path, record: dict) -> None:
    """Write ``{"machine": ..., **record}`` to ``out`` (its folder made if needed) and say where."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"machine": machine(), **record}, indent=1))
    print(f"-> {out}")
