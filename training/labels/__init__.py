"""Labels: upstream physical heads, the physics-derived proxy quality score, and real expert scores."""
