"""The Messages API stub as its own process, with its delay switchable over stdin.

`python -m bench.stub --delay 0.1` prints its URL, then reads lines such as
`delay 0.0` from stdin. A separate process keeps the stub's threads off the load
generator's GIL; every system under test (Tenantry's llm service, a peer gateway)
is pointed at the same stub.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tests.support.messages_api import MessagesApiStub

REPO = Path(__file__).resolve().parents[1]


class StubProcess:
    def __init__(self, delay_s: float = 0.0) -> None:
        self._proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.stub", "--delay", str(delay_s)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the Messages API stub did not start")
        self.delay_s = delay_s

    def set_delay(self, seconds: float) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"delay {seconds}\n")
        self._proc.stdin.flush()
        self._proc.stdout.readline()  # "ok": the new delay is in force
        self.delay_s = seconds

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    stub = MessagesApiStub(0, delay_s=args.delay, record=False)
    # http.server writes the headers and the body in two send() calls; with Nagle on,
    # the body waits for the client's delayed ACK: +40 ms on every call, which would
    # drown every figure here. Real API endpoints do not behave like that.
    stub._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    stub.start()
    sys.stdout.write(stub.url + "\n")
    sys.stdout.flush()
    for line in sys.stdin:  # EOF (the parent closed stdin or died): stop
        verb, _, value = line.partition(" ")
        if verb == "delay":
            stub.set_delay(float(value))
            sys.stdout.write("ok\n")
            sys.stdout.flush()
    stub.stop()


if __name__ == "__main__":
    main()
