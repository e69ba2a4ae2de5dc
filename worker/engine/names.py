"""Consumer names: the one place their grammar exists.

``{subscriber}:{category}`` names a consumer; a member of a consumer group adds
``@{member}/{size}``; a consumer that builds generation ``n`` of a projection in a rebuild adds
``#g{n}``. The name keys the consumer's position, lease and parked messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_GRAMMAR = re.compile(
    r"^(?P<subscriber>[^:]+):(?P<category>[^@#]+)"
    r"(?:@(?P<member>\d+)/(?P<size>\d+))?(?:#g(?P<generation>\d+))?$"
)


@dataclass(frozen=True, slots=True)
class ConsumerName:
    """A consumer's name, taken apart."""

    subscriber: str
    category: str
    member: int | None = None
    size: int | None = None
    generation: int | None = None

    def __str__(self) -> str:
        name = f"{self.subscriber}:{self.category}"
        if self.member is not None:
            name += f"@{self.member}/{self.size}"
        if self.generation is not None:
            name += f"#g{self.generation}"
        return name

    @classmethod
    def parse(cls, text: str) -> ConsumerName | None:
        """The name's parts, or ``None`` for text that is no consumer name."""
        match = _GRAMMAR.match(text)
        if match is None:
            return None
        member, size, generation = (
            None if match[part] is None else int(match[part])
            for part in ("member", "size", "generation")
        )
        return cls(match["subscriber"], match["category"], member, size, generation)

    @property
    def base(self) -> str:
        """``{subscriber}:{category}``: what every member and generation of it share."""
        return f"{self.subscriber}:{self.category}"

    @property
    def group_prefix(self) -> str:
        """What the names of every consumer-group member of it start with."""
        return f"{self.base}@"

    def building(self, generation: int) -> ConsumerName:
        """The consumer that builds ``generation`` of this one's projection."""
        return replace(self, generation=generation)

    @property
    def is_building(self) -> bool:
        """True for a rebuild's consumer (``#g{n}``)."""
        return self.generation is not None
