"""pytest fixtures for the emulator (owned by whoever builds it)."""
