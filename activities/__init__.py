"""The six phases of a move, one module each: snapshot, create, grant, rebind, verify, cleanup."""
