"""The emissions inventory has no upstream service of its own: it reads CarbonMapper, Epoch, Sentinel Hub and
SpaceKnow through their geofed sources and clients (`compute.py`). Hence no HTTP client and no credentials."""

NAME = "inventory"
TITLE = "Emissions inventory"
