"""How runs start, declared once: the work pool, its priority queues and the deployments.

    work pool "designflow" (process)  queues: high (priority 1), normal (2), low (3)
    upload-designs/upload-designs      on queue normal
    generate-mockups/generate-mockups  on the queue each trigger names (high | normal | low)
    publish-listing/publish-listing    on queue low (Etsy draft listings of stored designs)
    sweep-inbox/sweep-inbox            on queue normal, on a cron schedule, one at a time

`designflow deploy` registers them with a work pool (run them with `designflow worker`),
`designflow serve` runs the same list in one process, and the tests use it too. Entrypoints
are module paths (`designflow.flows.upload.upload_designs`), so a worker on any machine with
the package installed can load them: nothing points at a checkout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists

from designflow.mockups import PRIORITY_QUEUES
from designflow.settings import Settings
from designflow.storage.nas import USER_ID_PATTERN

# Labels of the run form in the Prefect UI (Prefect titles a parameter with its name); the
# descriptions come from each flow's `Args:` section.
PARAMETER_TITLES = {
    "paths": "Design files or folders",
    "user_id": "Seller (user id)",
    "batch_max_mb": "Batch size limit (MB)",
    "batch_max_images": "Files per batch limit",
    "allow_near_duplicates": "Store near duplicates",
    "replace_with_better": "Replace with better versions",
    "mockup_templates": "Mockup templates",
    "async_mockups": "Mockups in the background",
    "priority": "Mockup run priority",
    "listings_manifest": "Etsy listings manifest",
    "design_ids": "Design ids",
    "template_ids": "Mockup templates",
    "upload_run_id": "Upload run id",
    "publish": "Publish to Etsy",
    "inbox": "Inbox folder",
    "settle_seconds": "Settle time (seconds)",
}
# One line, as check_user_id accepts it: the form refuses a newline or a slash before the run.
USER_ID_SCHEMA = {"pattern": USER_ID_PATTERN, "maxLength": 128, "minLength": 1}


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow (module path), its name and queue, and its schedule."""

    flow: str  # "module:attribute"
    name: str
    queue: str = "normal"
    scheduled: bool = False  # the sweep: cron and inbox from the settings
    concurrency_limit: int | None = None
    parameters: dict = field(default_factory=dict)

    def load_flow(self):
        module, attribute = self.flow.split(":")
        return getattr(import_module(module), attribute)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec("designflow.flows.upload:upload_designs", "upload-designs"),
    DeploymentSpec("designflow.flows.mockups:generate_mockups", "generate-mockups"),
    # Etsy publishing on its own (the mockup run also publishes after rendering); the low
    # queue: a listing can wait behind uploads and mockups.
    DeploymentSpec("designflow.flows.publish:publish_listing", "publish-listing", queue="low"),
    # One sweep at a time; a scheduled sweep that finds one running waits its turn.
    DeploymentSpec(
        "designflow.flows.sweep:sweep_inbox", "sweep-inbox", scheduled=True, concurrency_limit=1
    ),
)


def runner_deployments(
    settings: Settings,
    inbox: str | None = None,
    sweep_cron: str | None = None,
    work_queues: bool = True,
) -> list:
    """The declared deployments as Prefect RunnerDeployments (for `deploy` and `serve`)."""
    from prefect.deployments.runner import EntrypointType

    made = []
    templates = known_templates(settings)
    for spec in DEPLOYMENTS:
        flow = spec.load_flow()
        extra: dict = {}
        if spec.scheduled:
            extra["cron"] = sweep_cron or settings.sweep_cron
            extra["parameters"] = {"inbox": inbox or settings.inbox, **spec.parameters}
        elif spec.parameters:
            extra["parameters"] = dict(spec.parameters)
        if work_queues:
            extra["work_queue_name"] = spec.queue
        deployment = flow.to_deployment(
            name=spec.name,
            description=form_description(flow.description or ""),
            concurrency_limit=spec.concurrency_limit,
            entrypoint_type=EntrypointType.MODULE_PATH,
            **extra,
        )
        properties = deployment._parameter_openapi_schema.properties
        label_parameters(properties)
        form_choices(properties, settings, templates)
        made.append(deployment)
    return made


def known_templates(settings: Settings) -> list[str]:
    """The mockup templates this deployment offers in the run form (deploy again after
    adding one)."""
    from designflow.orchestration.resources import current

    try:
        resources = current(settings)
        choices = []
        for name in resources.template_names():
            choices.append(name)
            areas = resources.template_manifest(name).get("print_areas") or []
            if len(areas) > 1:  # one area of it: `tee:front`
                choices += [f"{name}:{a.get('name')}" for a in areas if a.get("name")]
        return choices
    except Exception:  # noqa: BLE001 - a form without a list is still a form
        return []


def form_choices(properties: dict, settings: Settings, templates: list[str]) -> None:
    """The run form as a seller reads it: batch limits as plain numbers with their real
    defaults (an optional number showed Prefect's "float | None" switch), mockup templates
    as a choice of the known ones."""
    from designflow.settings import MB

    numbers = {
        "batch_max_mb": {"type": "number", "exclusiveMinimum": 0,
                         "default": settings.batch_max_bytes / MB},
        # 0: the file count follows the work (small files many to a batch)
        "batch_max_images": {"type": "integer", "minimum": 0,
                             "default": settings.batch_max_images if settings.batch_max_images_set else 0},
    }  # fmt: skip
    for name, schema in numbers.items():
        if name in properties:
            kept = {k: properties[name][k] for k in ("title", "description", "position")
                    if k in properties[name]}  # fmt: skip
            properties[name] = {**schema, **kept}
    for name in ("mockup_templates", "template_ids"):
        if name in properties and templates:
            kept = {k: properties[name][k] for k in ("title", "description", "position")
                    if k in properties[name]}  # fmt: skip
            required = "anyOf" not in properties[name]
            properties[name] = {"type": "array", "uniqueItems": True,
                                "items": {"type": "string", "enum": templates}, **kept}  # fmt: skip
            if not required:
                properties[name]["default"] = []


def form_description(docstring: str) -> str:
    """The docstring's text before `Args:`, each paragraph on one line: the UI shows the
    description's first line, and the docstring's wrapping cut it mid-sentence."""
    text = docstring.split("\nArgs:", 1)[0]
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def label_parameters(properties: dict) -> None:
    for name, schema in properties.items():
        schema["title"] = PARAMETER_TITLES.get(name, name.replace("_", " ").capitalize())
        if schema.get("description"):
            schema["description"] = " ".join(schema["description"].split())
        if name == "user_id":
            if "anyOf" in schema:  # optional (the sweep): the rule applies to the string
                for option in schema["anyOf"]:
                    if option.get("type") == "string":
                        option.update(USER_ID_SCHEMA)
            else:
                schema.update(USER_ID_SCHEMA)


def ensure_work_pool(name: str, concurrency_limit: int | None = None) -> None:
    """Create the pool and its queues, or update them. An existing pool's concurrency limit
    is changed only when one is given: a plain re-deploy must not lift an operator's limit."""
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency_limit)
            )
        except ObjectAlreadyExists:
            if concurrency_limit is not None:
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
        for queue, priority in PRIORITY_QUEUES.items():
            try:
                client.create_work_queue(name=queue, work_pool_name=name, priority=priority)
            except ObjectAlreadyExists:
                existing = client.read_work_queue_by_name(queue, work_pool_name=name)
                client.update_work_queue(existing.id, priority=priority)


def deploy_all(
    work_pool: str = "designflow",
    concurrency_limit: int | None = None,
    inbox: str | None = None,
    sweep_cron: str | None = None,
    results_on_nas: bool | None = None,
) -> list[str]:
    """Idempotent: re-running updates the pool, the queues and the deployments in place.
    `results_on_nas` (default: when the NAS is not a local folder) makes a NAS folder the
    server's default result storage, so every worker keeps results where all can read them."""
    settings = Settings.from_env()
    ensure_work_pool(work_pool, concurrency_limit)
    made = []
    if results_on_nas if results_on_nas is not None else not settings.nas_url.startswith("file:"):
        made.append(keep_results_on_nas())
    for deployment in runner_deployments(settings, inbox, sweep_cron):
        deployment_id = deployment.apply(work_pool_name=work_pool)
        made.append(f"{deployment.flow_name}/{deployment.name} ({deployment_id})")
    return made


RESULTS_BLOCK = "designflow-results"


def keep_results_on_nas() -> str:
    """The server's default result storage: the NAS's `prefect-results/` folder (a block)."""
    from prefect.client.orchestration import get_client

    from designflow.orchestration.blocks import NasResultStorage

    block_id = NasResultStorage(folder="prefect-results").save(RESULTS_BLOCK, overwrite=True)
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(default_result_storage_block_id=block_id)
    return f"result storage: nas:prefect-results/ (block {NasResultStorage.get_block_type_slug()}/{RESULTS_BLOCK})"
