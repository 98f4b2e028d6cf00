"""The answer of a route that moves money under an optional ``Idempotency-Key`` (cancel,
partial refund, job completion): the flow's view in the route's answer type, the flow's
status (202 while the provider has not confirmed), and ``Idempotent-Replayed: true`` when
the key's first answer is given again."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import msgspec
from litestar import MediaType, Response

T = TypeVar("T")


class KeyedResult(Protocol):
    @property
    def view(self) -> Any: ...

    @property
    def status(self) -> int: ...

    @property
    def replayed(self) -> bool: ...


def keyed_answer(result: KeyedResult, answer_type: type[T]) -> Response[T]:
    return Response(
        msgspec.convert(result.view, answer_type),
        status_code=result.status,
        headers={"Idempotent-Replayed": "true"} if result.replayed else None,
        media_type=MediaType.JSON,
    )
