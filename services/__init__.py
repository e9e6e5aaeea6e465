"""Domain services: the only code that talks to MongoDB or the upstream."""
