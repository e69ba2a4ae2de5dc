"""The example read models and their projectors."""

from projections.book_catalog import BookCatalogProjector
from projections.order_summary import OrderSummaryProjector

__all__ = ["BookCatalogProjector", "OrderSummaryProjector"]
