"""Maintenance scripts that are not part of the product (README screenshots)."""
