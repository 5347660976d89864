"""The only place long-lived tasks are created: named, logged, restarted with backoff when they crash, and
cancelled together on shutdown (cancel → wait with a timeout → log the ones that would not stop).

A task is never given up on while `restart` is set: a cluster or a database can be down for days. Its crash count
(and so its backoff) starts again once a run has stayed up for `healthy_after` seconds, and the tasks that are
crashing right now are listed by `failing()` and counted in `multicluster_task_crashes_total`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from multicluster import metrics
from multicluster.config import RetryConfig
from multicluster.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskFailure:
    crashes: int  # since the task last ran for `healthy_after` seconds
    error: str  # the last crash, "Type: message"
    since: float  # wall-clock time of the first of these crashes


class Supervisor:
    def __init__(self, name: str = "supervisor", *, healthy_after: float = 60.0,
                 restart_policy: RetryPolicy | None = None) -> None:
        self.name = name
        self.restart_policy = restart_policy or RetryConfig().task_restart  # unless spawn() is given another
        self.healthy_after = healthy_after
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, TaskFailure] = {}

    def failing(self) -> dict[str, TaskFailure]:
        """Tasks whose last run crashed and that have not yet stayed up for `healthy_after` seconds since."""
        return dict(self._failures)

    def __contains__(self, name: str) -> bool:
        t = self._tasks.get(name)
        return t is not None and not t.done()

    def names(self) -> list[str]:
        return [n for n, t in self._tasks.items() if not t.done()]

    def spawn(
        self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = True,
        backoff: RetryPolicy | None = None,
    ) -> asyncio.Task[None]:
        """Run `factory()`; when it raises (not when cancelled) log it and, if `restart`, run it again later."""
        if name in self:
            raise RuntimeError(f"task {name} is already running")
        bo = backoff or self.restart_policy

        kind = name.split("/", 1)[0]  # the metric label: task names carry cluster and type, kinds are few

        async def runner() -> None:
            attempt = 0
            loop = asyncio.get_running_loop()
            while True:
                healthy = loop.call_later(self.healthy_after, self._recovered, name)
                try:
                    await factory()
                    self._failures.pop(name, None)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._failures.get(name) is None:
                        attempt = 0  # the run before this crash was a healthy one
                    delay = bo.delay(attempt)
                    log.exception(
                        "task %s crashed; %s in %.1fs", name, "restarting" if restart else "not restarting", delay
                    )
                    metrics.TASK_CRASHES.labels(kind).inc()
                    prev = self._failures.get(name)
                    self._failures[name] = TaskFailure(
                        crashes=(prev.crashes if prev else 0) + 1,
                        error=f"{type(exc).__name__}: {exc}"[:500],
                        since=prev.since if prev else time.time(),
                    )
                    if not restart:
                        return
                finally:
                    healthy.cancel()
                attempt += 1
                await asyncio.sleep(delay)

        task = asyncio.create_task(runner(), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._tasks.pop(name, None) if self._tasks.get(name) is t else None)
        return task

    def _recovered(self, name: str) -> None:
        self._failures.pop(name, None)

    async def stop(self, name: str, timeout: float = 10.0) -> None:
        task = self._tasks.pop(name, None)
        self._failures.pop(name, None)
        if task is not None:
            await _cancel([task], timeout)

    async def stop_prefix(self, prefix: str, timeout: float = 10.0) -> None:
        victims = [t for n, t in list(self._tasks.items()) if n.startswith(prefix)]
        for n in [n for n in self._tasks if n.startswith(prefix)]:
            self._tasks.pop(n, None)
        for n in [n for n in self._failures if n.startswith(prefix)]:
            self._failures.pop(n, None)
        await _cancel(victims, timeout)

    async def stop_all(self, timeout: float = 10.0) -> None:
        victims = list(self._tasks.values())
        self._tasks.clear()
        self._failures.clear()
        await _cancel(victims, timeout)


async def _cancel(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        log.error("task %s did not stop within %.0fs", t.get_name(), timeout)
