"""Sentinel Hub: the Catalog (STAC API) as a federation member and the Statistical API as a process."""
