"""ghz call data, rendered as ghz renders it (for the actions these configurations use).

ghz marshals each data element to JSON (Go ``json.Marshal``), executes the text as a Go
``text/template`` with the call data (``.RequestNumber``, ``.UUID``, ...) and its template
functions (``newUUID``, ``randomString``, ``randomInt``; ``printf`` is built into Go
templates), then parses the result into the request message. An action that the JSON
encoder would escape (a ``"``, ``\\``, ``<``, ``>`` or ``&`` inside ``{{ }}``) no longer
parses as a template and ghz then sends the text unrendered, so ``render`` refuses those.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
import uuid
from typing import Any

ACTION = re.compile(r"\{\{(.*?)\}\}")
_JSON_ESCAPED = set('"\\<>&')
_PRINTF = re.compile(r"^printf\s+`([^`]*)`\s+\((.*)\)$")
_RANDOM_INT = re.compile(r"^randomInt\s+(-?\d+)\s+(-?\d+)$")
_RANDOM_STRING = re.compile(r"^randomString\s+(-?\d+)$")


class TemplateError(ValueError):
    """An action these helpers (and so, possibly, ghz) cannot render."""


def _value(expr: str, request_number: int, rng: random.Random) -> Any:
    expr = expr.strip()
    if expr == ".RequestNumber":
        return request_number
    if expr == ".UUID" or expr == "newUUID":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if expr == ".TimestampUnixNano":
        return time.time_ns()
    if expr == ".TimestampUnixMilli":
        return time.time_ns() // 1_000_000
    if expr == ".TimestampUnix":
        return int(time.time())
    if m := _RANDOM_INT.match(expr):
        low, high = int(m.group(1)), int(m.group(2))
        if not 0 <= low < high:
            raise TemplateError(f"randomInt needs 0 <= min < max: {expr!r}")
        return rng.randrange(low, high)  # ghz: [min, max)
    if m := _RANDOM_STRING.match(expr):
        n = int(m.group(1))
        n = n if n > 0 else rng.randint(2, 16)
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))
    if m := _PRINTF.match(expr):
        fmt, inner = m.group(1), m.group(2)
        if not re.fullmatch(r"%0?\d*d", fmt):
            raise TemplateError(f"only integer printf formats are handled: {fmt!r}")
        return fmt % _value(inner, request_number, rng)
    raise TemplateError(f"unsupported template action {{{{{expr}}}}}")


def render_text(text: str, request_number: int, rng: random.Random) -> str:
    def one(m: re.Match) -> str:
        if _JSON_ESCAPED & set(m.group(1)):
            raise TemplateError(f"{m.group(0)!r} holds a character that JSON escapes; ghz "
                                "would send it unrendered")
        return str(_value(m.group(1), request_number, rng))

    return ACTION.sub(one, text)


def render(element: dict, request_number: int = 0, rng: random.Random | None = None) -> dict:
    """One data element (a request message as JSON) with its actions executed."""
    text = json.dumps(element, separators=(",", ":"))
    return json.loads(render_text(text, request_number, rng or random.Random()))


def elements(data: Any) -> list[dict]:
    """ghz's data: one object, or an array of objects."""
    return data if isinstance(data, list) else [data]


def messages_for_call(config: dict, request_number: int, rng: random.Random,
                      client_streaming: bool) -> list[dict]:
    """The request messages ghz sends in call number ``request_number``.

    Unary: one element, round-robin by request number. Client or bidi streaming:
    ``stream-call-count`` messages (all elements when there is no count); with
    ``stream-dynamic-messages`` ghz re-renders every message but, once the count passes
    the array's length, repeats element 0 (as ghz's dynamic message provider does).
    """
    data = elements(config["data"])
    if not client_streaming:
        return [render(data[request_number % len(data)], request_number, rng)]
    count = int(config.get("stream-call-count") or len(data))
    if not config.get("stream-dynamic-messages"):
        # Rendered once per call (the whole array), then sent in a cycle.
        text = render_text(json.dumps(data, separators=(",", ":")), request_number, rng)
        rendered = json.loads(text)
        return [rendered[i % len(rendered)] for i in range(count)]
    return [render(data[i] if i < len(data) else data[0], request_number, rng)
            for i in range(count)]
