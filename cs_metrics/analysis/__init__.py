"""Analysis built on the registry: seasonality, staffing, leaderboards, feedback, outages,
what-if."""
