"""Target (a): a bare aiosmtpd server that accepts every message and discards it - the fastest a Python
asyncio SMTP server built on aiosmtpd can be on this machine, and the baseline every ratio is taken against.

    python -m bench.bare_server [--host 127.0.0.1] [--port 0]

Prints ``bare aiosmtpd ready: SMTP on HOST:PORT`` once listening; SIGTERM/SIGINT stop it. The server hostname
is passed explicitly (otherwise aiosmtpd calls ``socket.getfqdn()`` for every connection).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiosmtpd.smtp import SMTP

HOSTNAME = "bare.bench.test"


class Discard:
    """The smallest handler: every message is accepted and dropped."""

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        return "250 2.6.0 Queued mail for delivery"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Discard()
    server = await loop.create_server(lambda: SMTP(handler, hostname=HOSTNAME, loop=loop), host, port,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"bare aiosmtpd ready: SMTP on {bound[0]}:{bound[1]}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
