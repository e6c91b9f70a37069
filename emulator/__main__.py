"""``python -m emulator --port 7070 [--host 127.0.0.1]`` (also ``idmove emulator``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from emulator.server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emulator", description="Local emulator of the Azure control plane (ARM, Graph, Event Grid)."
    )
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (127.0.0.1, ::1, localhost)")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.host, args.port)
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"Azure control-plane emulator listening on http://{args.host}:{server.server_address[1]}"
        f" (pid {os.getpid()})",
        flush=True,
    )
    # SIGINT/SIGTERM stop it even when started with SIGINT ignored (in the background of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
