"""trustlab's self-measurements: HVP cost, TR step breakdown, logging overhead, API latency (`make bench`)."""
