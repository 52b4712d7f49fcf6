"""What a browser with the dashboard open does, for target (w): fetch the overview and the queue list every
`dashboard.refresh_interval` (as their live regions do), until killed. `python -m bench.dashboard_watch URL SECONDS`.
"""

from __future__ import annotations

import sys
import time
import urllib.request


def main() -> None:
    base, every = sys.argv[1].rstrip("/"), float(sys.argv[2])
    while True:
        for page in ("/", "/queues"):
            try:
                with urllib.request.urlopen(base + page, timeout=10) as r:
                    r.read()
            except OSError:
                pass  # the hub is starting or stopping
        time.sleep(every)


if __name__ == "__main__":
    main()
