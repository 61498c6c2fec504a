"""The bundled data, shipped as package data: the news corpus the demo indexes and the retrieval set the
benchmarks score against. Each folder's README.md gives its source and licence."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

NEWS = _HERE / "news"
SQUAD_DEV = _HERE / "eval" / "squad-v1.1-dev"
