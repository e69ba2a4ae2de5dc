"""``SubscriberOptions``: the options of a projector or an event handler, said once and taken
alike by both decorators and by ``build_subscriber``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from worker import BaseEvent, Domain, ReadModel, handle, on
from worker.engine.options import SubscriberOptions
from worker.engine.subscriber import build_subscriber
from worker.errors import RegistrationError

shop = Domain("options")


@shop.event(category="parcel")
class Sent(BaseEvent):
    parcel_id: str


class Parcel(ReadModel):
    __table__ = "parcels"
    __key__ = "parcel_id"
    parcel_id: str


class Parcels:
    @on(Sent)
    def sent(self, event: Sent, ctx: Any) -> None: ...


class Notifier:
    @handle(Sent)
    def sent(self, event: Sent, ctx: Any) -> None: ...


def test_a_projectors_keywords_become_its_options() -> None:
    """What the decorator is given is the subscriber's ``SubscriberOptions``, defaults beside."""
    local = Domain("local")
    local.projector(name="parcels", batch_size=50, read_models=[Parcel], version=2)(Parcels)
    options = local.subscribers[0].options
    assert options == SubscriberOptions(
        name="parcels", batch_size=50, read_models=[Parcel], version=2
    )
    assert (local.subscribers[0].version, local.subscribers[0].read_models) == ("2", (Parcel,))


def test_a_handler_takes_the_same_options() -> None:
    """``event_handler`` takes the same fields (a projector's own aside)."""
    local = Domain("local")
    local.event_handler(name="notifier", group_size=2, start_from="head")(Notifier)
    subscriber = local.subscribers[0]
    assert (subscriber.options.group_size, subscriber.start_from) == (2, "head")
    assert [slot.name for slot in subscriber.slots()] == [
        "notifier:parcel@0/2",
        "notifier:parcel@1/2",
    ]


def test_a_handler_given_read_models_is_refused() -> None:
    """Read models and a version are a projector's: a handler given them is refused, named."""
    with pytest.raises(RegistrationError, match="handler 'notifier': read_models and version"):
        Domain("local").event_handler(name="notifier", read_models=[Parcel])(Notifier)


def test_an_unknown_option_is_refused_where_it_is_written() -> None:
    """A keyword that is no option fails at the decorator, naming it."""
    with pytest.raises(TypeError, match="bacth_size"):
        Domain("local").projector(bacth_size=5)  # type: ignore[call-arg]


def test_a_misspelt_option_is_one_registration_line_with_the_one_meant() -> None:
    """``read_model=`` (for ``read_models=``) is refused at the decorator in one line, as a
    ``RegistrationError`` naming the decorator and the option most likely meant."""
    with pytest.raises(RegistrationError) as caught:
        Domain("local").projector(read_model=[])  # type: ignore[call-arg]
    message = str(caught.value)
    assert message == "@domain.projector: unknown option read_model (did you mean read_models?)"


def test_options_are_frozen() -> None:
    """A subscriber's options cannot change once registered."""
    options = SubscriberOptions(batch_size=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 6  # type: ignore[misc]


def test_build_subscriber_checks_the_options_it_is_given() -> None:
    """The builder checks options as the decorators do: a bad ``on_failure`` is refused."""
    with pytest.raises(RegistrationError, match="on_failure must be 'park' or 'stop'"):
        build_subscriber(
            Parcels,
            kind="projector",
            options=SubscriberOptions(on_failure="retry"),  # type: ignore[arg-type]
        )
