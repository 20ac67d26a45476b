"""od-bridge benchmark: ceilings, a naive bridge and od-bridge, measured as ratios in one run."""
