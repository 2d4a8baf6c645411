"""Async twins of the verifier's blocking answers: the same call, in a worker thread."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["in_thread"]

Owner = TypeVar("Owner")
Params = ParamSpec("Params")
Result = TypeVar("Result")


def in_thread(
    method: Callable[Concatenate[Owner, Params], Result],
) -> Callable[Concatenate[Owner, Params], Coroutine[Any, Any, Result]]:
    """Return the async twin of ``method``: it runs ``method`` in a worker thread.

    The twin is named ``a`` + the method's name and takes the same arguments; it raises what
    ``method`` raises.
    """

    @functools.wraps(method)
    async def twin(self: Owner, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        return await asyncio.to_thread(method, self, *args, **kwargs)

    twin.__name__ = f"a{method.__name__}"
    owner, _, _ = method.__qualname__.rpartition(".")
    twin.__qualname__ = f"{owner}.{twin.__name__}" if owner else twin.__name__
    twin.__doc__ = f"Async twin of :meth:`{method.__name__}`: the same answer, in a worker thread."
    return twin
