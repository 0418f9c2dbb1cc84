"""A minimal, valid GeoTIFF writer (no dependency): one band, one strip, uncompressed, georeferenced in EPSG:4326.

Enough for simulated results to open in GDAL, rasterio or QGIS: a little-endian classic TIFF whose one IFD holds
the baseline tags, ModelPixelScale + ModelTiepoint (the grid) and a GeoKeyDirectory (geographic WGS 84, pixels
as areas), plus GDAL_NODATA when a fill value is given.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

# data type → (TIFF SampleFormat, BitsPerSample, struct code)
SAMPLES: dict[str, tuple[int, int, str]] = {
    "uint8": (1, 8, "B"), "uint16": (1, 16, "H"), "int16": (2, 16, "h"), "uint32": (1, 32, "I"),
    "int32": (2, 32, "i"), "float32": (3, 32, "f"),
}
_SHORT, _LONG, _DOUBLE, _ASCII = 3, 4, 12, 2
_SIZES = {_SHORT: 2, _LONG: 4, _DOUBLE: 8, _ASCII: 1}
_CODES = {_SHORT: "H", _LONG: "I", _DOUBLE: "d"}


def write(values: Sequence[float], width: int, height: int, bounds: tuple[float, float, float, float],
          dtype: str = "int16", nodata: float | None = None) -> bytes:
    """`values` row by row (north first) over `bounds` (west, south, east, north, degrees) as GeoTIFF bytes."""
    if len(values) != width * height:
        raise ValueError(f"{len(values)} values for a {width}×{height} raster")
    sample_format, bits, code = SAMPLES[dtype]
    pixels = struct.pack(f"<{len(values)}{code}", *values)
    west, south, east, north = bounds
    tags: list[tuple[int, int, Sequence[float] | bytes]] = [
        (256, _LONG, [width]), (257, _LONG, [height]), (258, _SHORT, [bits]), (259, _SHORT, [1]),
        (262, _SHORT, [1]), (273, _LONG, [0]), (277, _SHORT, [1]), (278, _LONG, [height]),
        (279, _LONG, [len(pixels)]), (284, _SHORT, [1]), (339, _SHORT, [sample_format]),
        (33550, _DOUBLE, [(east - west) / width, (north - south) / height, 0.0]),
        (33922, _DOUBLE, [0.0, 0.0, 0.0, west, north, 0.0]),
        # GeoKeyDirectory: version 1.1.0, 3 keys: model type geographic, raster is area, GCS = EPSG:4326
        (34735, _SHORT, [1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326]),
    ]
    if nodata is not None:
        tags.append((42113, _ASCII, f"{nodata:g}".encode() + b"\0"))
    tags.sort(key=lambda t: t[0])
    ifd_offset = 8
    ifd_size = 2 + 12 * len(tags) + 4
    extra = bytearray()  # values that do not fit in an entry's 4 bytes, after the IFD
    entries = bytearray()
    data_offset = ifd_offset + ifd_size
    strip_entry = -1
    for tag, kind, value in tags:
        raw = bytes(value) if kind == _ASCII else struct.pack(f"<{len(value)}{_CODES[kind]}", *value)
        count = len(raw) // _SIZES[kind]
        if tag == 273:
            strip_entry = len(entries)
        if len(raw) <= 4:
            entries += struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0")
        else:
            entries += struct.pack("<HHII", tag, kind, count, data_offset + len(extra))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    pixel_offset = data_offset + len(extra)
    entries[strip_entry + 8:strip_entry + 12] = struct.pack("<I", pixel_offset)
    header = b"II*\0" + struct.pack("<I", ifd_offset)
    ifd = struct.pack("<H", len(tags)) + bytes(entries) + struct.pack("<I", 0)
    return header + ifd + bytes(extra) + pixels
