"""How runs are triggered (work pools, queues, schedules)."""
