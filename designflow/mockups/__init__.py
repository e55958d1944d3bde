"""Mockups: templates (authoring.py) and rendering (render.py)."""

# The work queues of background mockup runs, by name, with their Prefect priority (1 first):
# declared by `designflow deploy`, named by a trigger's priority, offered by the web page.
PRIORITY_QUEUES = {"high": 1, "normal": 2, "low": 3}
