"""Prefect tasks: thin wrappers that add retries, tags, logging and artifacts to one core call each."""
