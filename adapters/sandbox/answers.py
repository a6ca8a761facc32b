"""JSON answers of the sandboxes, written by orjson.

A journey search asks the timetable, operator and local-route sandboxes about twenty
times, and they share the hub's cores in a bench: json.dumps was about a tenth of their
CPU. The bytes are the same JSON as Starlette's JSONResponse writes (compact, UTF-8 as
is), floats in their shortest form.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSONAnswer(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
