"""Example search spaces on users' own models (see docs/user_model.md)."""
