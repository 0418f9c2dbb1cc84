"""The STAC API face (stac-fastapi at /stac): our collections federated with Sentinel Hub and CarbonMapper STAC."""
