"""Sample data, live event feed and outage what-if simulations built on the canonical tables."""
