"""SQL migrations, shipped as package data (designflow.migrations)."""
