"""Persistence: SQLModel tables, the database connection, queries and Alembic migrations."""
