"""designflow: print-on-demand design files from upload to store.

The core (catalog, images, ingest, storage, etsy, mockups, ops, settings, errors) holds the
domain code and never imports Prefect (tests/core/test_layers.py imports it with Prefect made
unavailable). The Prefect-facing side: designflow.orchestration (what flows and tasks share,
worker and trigger processes), designflow.flows, designflow.tasks, designflow.deployments, and
the front ends designflow.cli and designflow.web.
"""

__version__ = "0.1.0"
