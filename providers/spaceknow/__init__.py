"""SpaceKnow: scenes (Ragnar imagery search) as a collection, credits check and Kraken analysis as processes."""
