"""The example domain: the seed's event-sourced Order and the fact-event Book.

``import domain`` registers everything on ``domain.domain`` (``[domain] instance`` in domain.toml).
"""

from worker import Domain

domain: Domain = Domain("shop")

from domain.book import Book, BookFactEvent, BookPublished  # noqa: E402  (needs `domain` first)
from domain.fulfillment import Fulfillment, PaymentTimedOut  # noqa: E402
from domain.order import (  # noqa: E402
    Order,
    OrderCancelled,
    OrderConfirmed,
    OrderItem,
    OrderPlaced,
    OrderShipped,
    OrderStateError,
)

__all__ = [
    "Book",
    "BookFactEvent",
    "BookPublished",
    "Fulfillment",
    "Order",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderItem",
    "OrderPlaced",
    "OrderShipped",
    "OrderStateError",
    "PaymentTimedOut",
    "domain",
]
