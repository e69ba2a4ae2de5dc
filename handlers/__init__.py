"""The example event handlers."""
