"""The admin console's own services: the audit trail and the admin API tokens."""
