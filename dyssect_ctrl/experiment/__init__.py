"""Scaling experiments: record a running controller's view, then report on it."""
