"""pytest fixtures for the engine (owned by whoever builds it)."""
