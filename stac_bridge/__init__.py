"""The STAC API face (stac-fastapi at /stac): our collections federated with Sentinel Hub and CarbonMapper STAC."""

import logging

# stac-fastapi builds a module-level `ApiSettings()` from the environment when `stac_fastapi.types.core` is first
# imported (it only provides defaults for BaseCoreClient's title/description/landing id) and warns "Using default
# values for stac_fastapi_title, …". geofed never uses that instance: `stac_bridge.app.build_api` passes its own
# ApiSettings (title, description, landing id, version) to StacApi and the client. The warning is harmless noise at
# every start, so this one message is dropped — before any stac_bridge module imports stac-fastapi.
logging.getLogger("stac_fastapi.types.config").addFilter(
    lambda record: not record.getMessage().startswith("Using default values for stac_fastapi_")
)
