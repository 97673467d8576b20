"""The pull-through mirror: upstreams and routing, cached content with TTLs, single-flight fills."""
