"""Epoch SCo2 API: plot-level biomass and land-use-change emissions (streamed NDJSON)."""
