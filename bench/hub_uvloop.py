"""Target (d): the unchanged hub (`transport run ...`) with uvloop's event loop policy installed first.

    python -m bench.hub_uvloop run -c CONFIG

The project has not adopted uvloop; this launcher exists so the benchmark can tell what adopting it would buy.
Exits with status 3 and a sentence on stderr when uvloop is not installed.
"""

from __future__ import annotations

import asyncio
import sys


def main() -> int:
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed (pip install uvloop)", file=sys.stderr)
        return 3
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from transport.cli import main as transport_main

    return transport_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
