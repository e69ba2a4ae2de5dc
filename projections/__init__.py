"""The example read models and their projectors."""

from projections.order_summary import OrderSummaryProjector

__all__ = ["OrderSummaryProjector"]
