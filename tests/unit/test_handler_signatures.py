"""A projector or handler the engine cannot call is refused when it is registered, in one line
naming the class, the method and what is wrong (not found message by message at run time)."""

from __future__ import annotations

from typing import Any

import pytest

from worker import BaseEvent, Domain, handle, on
from worker.errors import RegistrationError

local = Domain("signatures")


@local.event(category="item")
class Added(BaseEvent):
    sku: str


def register_projector(cls: type[Any]) -> None:
    Domain("fresh").projector(name="items")(cls)


def refusal(cls: type[Any]) -> str:
    with pytest.raises(RegistrationError) as caught:
        register_projector(cls)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_handler_missing_ctx_is_refused() -> None:
    """``(self, event)``: the engine passes ctx too."""

    class Items:
        @on(Added)
        def added(self, event: Added) -> None: ...

    assert refusal(Items) == (
        "projector 'items': Items.added takes (self, event): missing ctx; the engine calls it "
        "with (self, event, ctx)"
    )


def test_a_handler_missing_self_is_refused() -> None:
    """``(event, ctx)`` on a plain method: the instance would arrive as ``event``."""

    class Items:
        @on(Added)
        def added(event: Added, ctx: Any) -> None: ...  # type: ignore[misc]

    assert refusal(Items) == (
        "projector 'items': Items.added takes (event, ctx): missing self (make it a "
        "@staticmethod if it takes none); the engine calls it with (self, event, ctx)"
    )


def test_a_handler_with_too_many_required_parameters_is_refused() -> None:
    """A fourth parameter without a default can never be passed."""

    class Items:
        @handle(Added)
        async def added(self, event: Added, ctx: Any, retries: int) -> None: ...

    assert refusal(Items) == (
        "projector 'items': Items.added takes (self, event, ctx, retries): too many required "
        "parameters (retries); the engine calls it with (self, event, ctx)"
    )


def test_a_handler_with_a_required_keyword_only_parameter_is_refused() -> None:
    """A keyword-only parameter without a default can never be passed."""

    class Items:
        @on(Added)
        def added(self, event: Added, ctx: Any, *, strict: bool) -> None: ...

    assert refusal(Items) == (
        "projector 'items': Items.added has required keyword-only parameter(s) strict; the "
        "engine calls it with (self, event, ctx)"
    )


def test_a_setup_missing_conn_is_refused() -> None:
    """A projector's ``setup`` is called with the connection."""

    class Items:
        async def setup(self) -> None: ...

        @on(Added)
        def added(self, event: Added, ctx: Any) -> None: ...

    assert refusal(Items) == (
        "projector 'items': Items.setup takes (self): missing conn; the engine calls it with "
        "(self, conn)"
    )


def test_a_class_that_needs_constructor_arguments_is_refused() -> None:
    """The engine makes the instance with ``cls()``."""

    class Items:
        def __init__(self, mailer: Any) -> None:
            self.mailer = mailer

        @on(Added)
        def added(self, event: Added, ctx: Any) -> None: ...

    assert refusal(Items) == (
        "projector 'items': Items() needs mailer, but the engine makes its instance with no "
        "arguments: give them defaults"
    )


def test_every_shape_the_engine_can_call_is_accepted() -> None:
    """Static and class methods, extra parameters with defaults, ``*args`` and decorated
    methods are all callable as ``(event, ctx)``."""

    def logged(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return wrapper

    class Items:
        @on(Added)
        @staticmethod
        def static(event: Added, ctx: Any) -> None: ...

        @on(Added)
        @classmethod
        def of_class(cls, event: Added, ctx: Any) -> None: ...

        @on(Added)
        def defaults(
            self, event: Added, ctx: Any, extra: int = 0, *, flag: bool = False
        ) -> None: ...

        @on(Added)
        def varargs(self, *args: Any) -> None: ...

        @on(Added)
        @logged
        def wrapped(self, event: Added, ctx: Any) -> None: ...

    register_projector(Items)
