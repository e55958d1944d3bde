"""Sample designs and the example mockup templates, shipped as package data."""
