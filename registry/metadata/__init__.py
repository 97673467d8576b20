"""Metadata in SQL: the schema, the database handle, and one query module per table group."""
