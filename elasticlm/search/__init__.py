"""Architecture search: evolution (single objective and Pareto), candidate evaluation, head search, latency."""
