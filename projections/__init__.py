"""The example read models and their projectors."""
