"""The OGC API face: shared pygeoapi provider and processor bases."""
