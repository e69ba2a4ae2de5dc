"""Events: pydantic models with a MessageDB type name and aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from worker.store.message import NewMessage

if TYPE_CHECKING:
    from collections.abc import Mapping


class BaseEvent(BaseModel):
    """Base of every event. Immutable; validated by pydantic on creation and on decoding.

    ``__type_name__`` is the MessageDB ``type`` written for this class (the class name unless the
    ``@domain.event`` decorator says otherwise); ``__aliases__`` are other type names that decode
    into this class (names written by Eventide, Protean's ``Domain.Event.v1`` form, or older
    versions of the class).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    __type_name__: ClassVar[str] = ""
    __aliases__: ClassVar[tuple[str, ...]] = ()
    __category__: ClassVar[str | None] = None

    @classmethod
    def type_name(cls) -> str:
        """The MessageDB type this class is written as."""
        return cls.__type_name__ or cls.__name__

    def to_message(self, metadata: Mapping[str, Any] | None = None) -> NewMessage:
        """This event as a message to write, data in JSON form."""
        return NewMessage(
            type=self.type_name(),
            data=self.model_dump(mode="json"),
            metadata=dict(metadata) if metadata else None,
        )
