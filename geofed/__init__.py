"""geofed: a federated OGC API / STAC API catalog server for GHG emissions and Earth observation data."""

__version__ = "0.1.0"
