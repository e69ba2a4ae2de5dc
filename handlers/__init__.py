"""The example event handlers."""

from handlers.notifications import SendShipmentNotification, ShipmentNotifier

__all__ = ["SendShipmentNotification", "ShipmentNotifier"]
