"""designflow core: domain code with no Prefect imports."""

__version__ = "0.1.0"
