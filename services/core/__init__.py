"""Primitives every other package uses: errors, money, the clock, ids and shared types."""
