"""Identity Mover developer tooling: the `idmove` command line, the local Functions host, Azurite."""
