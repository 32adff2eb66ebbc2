"""The ceiling: a bare Starlette app on uvicorn, run exactly as the drift server's CLI runs uvicorn.

`POST /hello` reads the body (a report is ~3 kB) and answers a small JSON object, so the only
difference from the drift server is the server's own work: auth, validation and the database.

    python -m benchmarks.hello --port 8091
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"hello": "world"})


app = Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"]), Route("/health", hello)])


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False,
                server_header=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
