"""NASA AppEEARS: area/point extractions as an async OGC API process, products as STAC collections."""
