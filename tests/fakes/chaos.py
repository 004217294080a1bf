"""ChaosProxy: sits in front of a vendor fake and makes the network misbehave the way production networks do.

Per request it may answer 429 (transient, before the vendor sees it), or forward and then drop the response (the
vendor committed, the client never hears: a "lost response"). It can also SIGKILL a worker process right after the
vendor committed a create and before the worker could record it: the worst moment for exactly-once.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class ChaosProxy:
    upstream: str
    transient_rate: float = 0.20
    lost_rate: float = 0.05
    seed: int = 7
    kill_at_creates: frozenset[int] = frozenset()
    """Ordinal numbers of successful creates (POSTs) after which the victim process is killed."""
    victim: Callable[[], int | None] = lambda: None
    creates: int = 0
    transient: int = 0
    lost: int = 0
    kills: list[int] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _session: aiohttp.ClientSession | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)

        async def close_session(_app: web.Application) -> None:
            if self._session is not None:
                await self._session.close()

        app.on_cleanup.append(close_session)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = await request.read()
        roll = self._rng.random()
        if roll < self.transient_rate:
            self.transient += 1
            return web.json_response(
                {"code": "TooManyRequests", "message": "Rate limit exceeded, slow down"},
                status=429,
                headers={"Retry-After": "1"},
            )
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            reply_headers = {key: value for key, value in upstream.headers.items() if key.lower() not in _HOP_BY_HOP}
        if request.method == "POST" and status in (200, 201):
            self.creates += 1
            if self.creates in self.kill_at_creates:
                pid = self.victim()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    self.kills.append(self.creates)
                return self._drop(request)
        if roll < self.transient_rate + self.lost_rate:
            self.lost += 1
            return self._drop(request)
        return web.Response(body=payload, status=status, headers=reply_headers)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        raise ConnectionResetError("response dropped on purpose")
