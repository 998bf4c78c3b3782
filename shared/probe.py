"""`python -m shared.probe [ready|live]`: exit 0 when this container's service says so.

For compose healthchecks, which can only exec: it asks the service's own HTTP
endpoint (shared.health) on 127.0.0.1:$TENANTRY_HTTP_PORT, so compose and Kubernetes
judge a service by the same checks. Standard library only, so it starts in ~30 ms.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe(kind: str, port: int, timeout_s: float = 3.0) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/{'readyz' if kind == 'ready' else 'livez'}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return answer.status == 200, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return False, f"no answer on port {port} ({type(exc).__name__})"


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else "ready"
    if kind not in ("ready", "live"):
        sys.stderr.write("usage: python -m shared.probe [ready|live]\n")
        return 2
    port = os.environ.get("TENANTRY_HTTP_PORT", "")
    if not port.isdigit() or int(port) == 0:
        sys.stderr.write("TENANTRY_HTTP_PORT is not a fixed port: nothing to probe\n")
        return 2
    ok, detail = probe(kind, int(port))
    # The healthcheck log (docker inspect) shows this: check names only, no secrets.
    sys.stdout.write(detail + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
