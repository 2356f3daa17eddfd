"""JSON that comes from outside — callback and webhook bodies, provider answers — parsed strictly.

``json.loads`` alone lets two things through that later become server errors: ``NaN`` and
``Infinity`` (not JSON; PostgreSQL's ``jsonb`` refuses them when the value is stored), and nesting
deeper than the interpreter's recursion limit, which raises ``RecursionError`` — not a
``ValueError`` — so a caller catching ``ValueError`` answers 500 to a 20 kB body of ``[``.
"""

from __future__ import annotations

import json
from typing import Any


def reject_json_constant(name: str) -> Any:
    """``parse_constant`` for ``json.loads``: refuse ``NaN``, ``Infinity`` and ``-Infinity``."""
    raise ValueError(f"invalid JSON constant {name}")


def parse_json(data: bytes | str) -> Any:
    """The JSON value of ``data``; ``ValueError`` for anything that is not standard JSON, including
    constants JSON does not have and nesting too deep to parse."""
    try:
        return json.loads(data, parse_constant=reject_json_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
