"""pytest fixtures for the host (owned by whoever builds it)."""
