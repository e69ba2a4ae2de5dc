"""The example read models and their projectors."""

from projections.book_catalog import BookCatalogProjector
from projections.order_summary import OrderSummaryProjector
from projections.orders_by_status import OrdersByStatusProjector

__all__ = ["BookCatalogProjector", "OrderSummaryProjector", "OrdersByStatusProjector"]
