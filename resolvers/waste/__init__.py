"""The waste domain: generators, sites, bins, tags, tariffs, pickups, scans and volumes."""
