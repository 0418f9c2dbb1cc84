"""Helpers of the Sentinel Hub simulator: error documents, parameters, CQL2 node walks, fields projection,
request bodies."""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from http import HTTPStatus
from typing import Any

from pygeofilter import ast
from starlette.requests import Request
from starlette.responses import JSONResponse

from simulators.sentinelhub.data import BadRequest, parse_time


def sh_error(status: int, message: str) -> JSONResponse:
    """The error body of the doc's samples; `code` values other than COMMON_BAD_PAYLOAD are a CHOICE."""
    code = {400: "COMMON_BAD_PAYLOAD", 401: "COMMON_UNAUTHORIZED", 404: "COMMON_NOT_FOUND"}.get(status, "COMMON")
    body = {"error": {"status": status, "reason": HTTPStatus(status).phrase, "message": message, "code": code,
                      "errors": {}}}
    return JSONResponse(body, status_code=status)


def parse_datetime_param(value: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("Parameter 'datetime' is required")
    if "/" not in value:
        instant = parse_time(value, "datetime")
        return instant, instant
    left, _, right = value.partition("/")
    start = None if left in ("", "..") else parse_time(left, "datetime")
    end = None if right in ("", "..") else parse_time(right, "datetime")
    if start and end and start > end:
        raise BadRequest("Invalid datetime: the interval starts after it ends")
    return start, end


def attribute_names(node: Any) -> set[str]:
    found = {node.name} if isinstance(node, ast.Attribute) else set()
    if isinstance(node, ast.Node):
        for child in node.get_sub_nodes():
            found |= attribute_names(child)
    return found


def parse_fields(value: Any) -> tuple[list[str], list[str]]:
    """GET `fields=id,-geometry` or POST `{"include": [...], "exclude": [...]}`."""
    if not value:
        return [], []
    if isinstance(value, dict):
        return list(value.get("include") or []), list(value.get("exclude") or [])
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    return [p.lstrip("+") for p in parts if not p.startswith("-")], [p[1:] for p in parts if p.startswith("-")]


def fields_projection(item: dict[str, Any], include: list[str], exclude: list[str]) -> dict[str, Any]:
    """Fields extension: include wins over exclude; paths are `key` or `properties.key`."""
    out = {k: v for k, v in item.items() if not include or k in include}
    props = {k: v for k, v in item["properties"].items() if f"properties.{k}" in include}
    if props and "properties" not in include:
        out["properties"] = props
    for path in exclude:
        if path in include:
            continue
        head, _, tail = path.partition(".")
        if tail and isinstance(out.get(head), dict):
            out[head] = {k: v for k, v in out[head].items() if k != tail}
        elif not tail:
            out.pop(head, None)
    return out


# ----------------------------------------------------------------- the app
def json_value(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else text


async def read_body(request: Request, bodies: deque[dict[str, Any]]) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    bodies.append({"path": request.url.path, "body": body})
    return body


# ----------------------------------------------------------------- the Catalog's filter grammar
COMPARISONS = (ast.Equal, ast.NotEqual, ast.LessThan, ast.LessEqual, ast.GreaterThan, ast.GreaterEqual)


def standard_between(value: Any) -> Any:
    """CQL2 JSON `between` as the standard writes it (`[prop, low, high]`) in the shape pygeofilter 0.4 parses
    (`[prop, [low, high]]`); everything else unchanged."""
    if isinstance(value, list):
        return [standard_between(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: standard_between(v) for k, v in value.items()}
    args = out.get("args")
    if str(out.get("op", "")).lower() == "between" and isinstance(args, list) and len(args) == 3:
        out["args"] = [args[0], [args[1], args[2]]]
    return out


def grammar_error(node: Any) -> str | None:
    """Why `node` is outside the Catalog's documented filter grammar (None when it fits): `andExpression`,
    `cql2NotExpression`, or a comparison predicate (binary comparison or `isBetween`) whose operands are
    properties or literals (no functions, no arithmetic)."""
    if isinstance(node, ast.And):
        return grammar_error(node.lhs) or grammar_error(node.rhs)
    if isinstance(node, ast.Not):
        return grammar_error(node.sub_node)
    if isinstance(node, COMPARISONS):
        operands = [node.lhs, node.rhs]
    elif isinstance(node, ast.Between):
        operands = [node.lhs, node.low, node.high]
    else:
        return f"unsupported operation {type(node).__name__}; the filter must be an and/not expression of " \
               "comparisons (=, <>, <, <=, >, >=, between)"
    if any(isinstance(o, ast.Node) and not isinstance(o, ast.Attribute) for o in operands):
        return f"the operands of {type(node).__name__} must be queryables or literal values"
    return None
