"""CarbonMapper: plumes, sources and scenes (OGC API Features) and the CarbonMapper STAC API (federation)."""
