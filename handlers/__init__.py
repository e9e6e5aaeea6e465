"""Tornado request handlers: thin adapters from HTTP to services."""
