"""The Prefect-facing layer: what flows and tasks share (blocks, the resources each process
builds once, the retry policy, task runners, UI links, the upload's artifacts) and the
processes that serve them (worker, trigger, watchdog, reading a run's result).

The core (catalog, images, ingest, storage, etsy, mockups, ops) never imports Prefect; this
package, `flows`, `tasks`, `deployments`, `cli` and `web` may.
"""
