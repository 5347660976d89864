"""The only place long-lived tasks are created: named, logged, restarted with backoff when they crash, and
cancelled together on shutdown (cancel → wait with a timeout → log the ones that would not stop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from multicluster.retry import Backoff

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, name: str = "supervisor") -> None:
        self.name = name
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, name: str) -> bool:
        t = self._tasks.get(name)
        return t is not None and not t.done()

    def names(self) -> list[str]:
        return [n for n, t in self._tasks.items() if not t.done()]

    def spawn(
        self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = True, backoff: Backoff | None = None
    ) -> asyncio.Task[None]:
        """Run `factory()`; when it raises (not when cancelled) log it and, if `restart`, run it again later."""
        if name in self:
            raise RuntimeError(f"task {name} is already running")
        bo = backoff or Backoff(initial=1.0, cap=60.0)

        async def runner() -> None:
            attempt = 0
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    delay = bo.delay(attempt)
                    log.exception(
                        "task %s crashed; %s in %.1fs", name, "restarting" if restart else "not restarting", delay
                    )
                    if not restart:
                        return
                    attempt += 1
                    await asyncio.sleep(delay)

        task = asyncio.create_task(runner(), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._tasks.pop(name, None) if self._tasks.get(name) is t else None)
        return task

    async def stop(self, name: str, timeout: float = 10.0) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            await _cancel([task], timeout)

    async def stop_prefix(self, prefix: str, timeout: float = 10.0) -> None:
        victims = [t for n, t in list(self._tasks.items()) if n.startswith(prefix)]
        for n in [n for n in self._tasks if n.startswith(prefix)]:
            self._tasks.pop(n, None)
        await _cancel(victims, timeout)

    async def stop_all(self, timeout: float = 10.0) -> None:
        victims = list(self._tasks.values())
        self._tasks.clear()
        await _cancel(victims, timeout)


async def _cancel(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        log.error("task %s did not stop within %.0fs", t.get_name(), timeout)
