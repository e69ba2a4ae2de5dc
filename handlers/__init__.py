"""The example event handlers."""

from handlers.desks import InventoryDesk, OrderDesk, PaymentDesk
from handlers.notifications import SendShipmentNotification, ShipmentNotifier

__all__ = [
    "InventoryDesk",
    "OrderDesk",
    "PaymentDesk",
    "SendShipmentNotification",
    "ShipmentNotifier",
]
