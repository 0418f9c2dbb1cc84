"""orjson for pygeoapi's responses.

pygeoapi serialises every response with `json.dumps` (`pygeoapi.util.to_json`); on item pages that is the
largest single cost geofed adds to an upstream's answer. This swaps in orjson with the same contract: `str` out,
`json_serial` for what orjson cannot encode, `<`/`>` escaped as pygeoapi does. Installed once, before pygeoapi's
API modules are imported (they bind `to_json` by name), and re-bound in any module already imported.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson


def to_json(dict_: Any, pretty: bool = False) -> str:
    from pygeoapi.util import json_serial

    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    try:
        text = orjson.dumps(dict_, default=json_serial, option=option).decode()
    except TypeError:  # e.g. an integer beyond 64 bits: fall back to the standard library
        import json

        text = json.dumps(dict_, default=json_serial, separators=(",", ":"), indent=4 if pretty else None)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def install() -> None:
    import pygeoapi.util

    original = pygeoapi.util.to_json
    if original is to_json:
        return
    for name, module in list(sys.modules.items()):
        if name.startswith("pygeoapi") and getattr(module, "to_json", None) is original:
            module.to_json = to_json  # type: ignore[attr-defined]
