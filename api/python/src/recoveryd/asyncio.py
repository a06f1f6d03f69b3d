"""asyncio front ends: the blocking SDK run in threads, awaited from a loop.

The decision (api/python/README.md): the transport, heartbeats and lease
are threads whatever the program, because a lease must be renewed and
checked even while the event loop is busy or blocked; an asyncio program
gets thin wrappers. :class:`AsyncClient` runs each call in the loop's
default executor. :class:`AsyncAgent` runs ``async def`` handlers on the
program's own loop; when their attempt is stopped (lease lost, fenced,
revoked) the coroutine is cancelled, so it sees ``CancelledError`` at its
next ``await``, and ``await ctx.checkpoint()`` raises Fenced/Revoked as the
blocking one does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any, Awaitable, Callable, List, Mapping, Optional, Sequence, TypeVar

from .agent import Agent, TaskContext
from .client import Client

T = TypeVar("T")


class AsyncClient:
    """:class:`recoveryd.client.Client` with every method awaitable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = Client(*args, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        fn = getattr(self.sync, name)
        if not callable(fn):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

        return call


class AsyncTaskContext:
    """The attempt, for a coroutine handler (see :class:`TaskContext`)."""

    def __init__(self, ctx: TaskContext) -> None:
        self.sync = ctx
        self.task_id = ctx.task_id
        self.attempt = ctx.attempt
        self.payload = ctx.payload
        self.checkpoint_data = ctx.checkpoint_data
        self.checkpoint_version = ctx.checkpoint_version

    @property
    def cancelled(self) -> bool:
        return self.sync.cancelled

    def raise_if_cancelled(self) -> None:
        self.sync.raise_if_cancelled()

    async def checkpoint(self, data: Any) -> int:
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(None, self.sync.checkpoint, data)
        self.checkpoint_data, self.checkpoint_version = data, version
        return int(version)

    def progress(self, amount: float = 1.0) -> None:
        self.sync.progress(amount)


AsyncHandler = Callable[[AsyncTaskContext], Awaitable[Any]]


class AsyncAgent:
    """An :class:`Agent` whose handler is a coroutine run on the caller's loop."""

    def __init__(self, node_id: str, endpoints: Optional[Sequence[str]] = None,
                 **kwargs: Any) -> None:
        self.sync = Agent(node_id, endpoints, handler=self._run, **kwargs)
        self._handler: Optional[AsyncHandler] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def handler(self, fn: AsyncHandler) -> AsyncHandler:
        self._handler = fn
        return fn

    def _run(self, ctx: TaskContext) -> Any:
        # In the SDK's task thread: the coroutine runs on the program's loop.
        assert self._loop is not None and self._handler is not None
        fut = asyncio.run_coroutine_threadsafe(self._handler(AsyncTaskContext(ctx)), self._loop)
        while True:
            try:
                return fut.result(timeout=0.02)
            except concurrent.futures.TimeoutError:
                if ctx.cancelled:
                    fut.cancel()
                    ctx.raise_if_cancelled()
            except concurrent.futures.CancelledError:
                ctx.raise_if_cancelled()
                raise

    async def start(self) -> "AsyncAgent":
        if self._handler is None:
            raise ValueError("no handler: decorate a coroutine function with @agent.handler")
        self._loop = asyncio.get_running_loop()
        self.sync.start()
        return self

    async def stop(self, timeout: float = 5.0) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.sync.stop, timeout)

    async def __aenter__(self) -> "AsyncAgent":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def running_tasks(self) -> Mapping[str, int]:
        return self.sync.running_tasks()


__all__: List[str] = ["AsyncAgent", "AsyncClient", "AsyncTaskContext"]
