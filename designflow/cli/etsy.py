"""`designflow etsy connect|stub`, `etsy-stub` and `publish`: connect a shop, run the local
Etsy-like server, publish stored designs. Secrets are read from the environment or a prompt,
never from the command line (where `ps` and shell history would keep them)."""

from __future__ import annotations

import getpass
import os
import signal
import sys
import threading
from pathlib import Path

import typer

from designflow.cli.app import app, fail, guard_children, out, print_json

etsy = typer.Typer(
    help="Etsy shop connection and the local Etsy-like server.", no_args_is_help=True
)
app.add_typer(etsy, name="etsy")


@etsy.command("connect")
def connect(
    base_url: str = typer.Option(..., "--base-url", help="https://api.etsy.com for the real Etsy"),
    keystring: str = typer.Option(..., "--keystring", help="the app's API keystring"),
    shop_id: str = typer.Option(..., "--shop-id"),
    block: str | None = typer.Option(None, "--block", help="block name (default DESIGNFLOW_ETSY_BLOCK)"),
) -> int:  # fmt: skip
    """Save the shop's credentials in a Prefect block (secrets from ETSY_SHARED_SECRET /
    ETSY_REFRESH_TOKEN or a prompt)."""
    from pydantic import SecretStr

    from designflow.orchestration.blocks import EtsyShopBlock
    from designflow.settings import Settings

    secret = os.environ.get("ETSY_SHARED_SECRET") or getpass.getpass("Etsy shared secret: ")
    refresh = os.environ.get("ETSY_REFRESH_TOKEN") or getpass.getpass("Etsy refresh token: ")
    name = block or Settings.from_env().etsy_block
    EtsyShopBlock(
        base_url=base_url, keystring=keystring, shared_secret=SecretStr(secret),
        shop_id=shop_id, refresh_token=SecretStr(refresh),
    ).save(name, overwrite=True)  # fmt: skip
    out(f"saved Etsy shop {shop_id} in Prefect block {name!r}")
    return 0


def stub(
    port: int = typer.Option(8791, "--port"),
    per_second: int = typer.Option(5, "--per-second"),
    token_ttl: float = typer.Option(3600.0, "--token-ttl", help="access token lifetime (s)"),
    save_block: bool = typer.Option(False, "--connect", help="also save a block that points designflow at it"),
) -> int:  # fmt: skip
    """Run the local Etsy-like server on 127.0.0.1."""
    from designflow.testing.etsy_stub import EtsyStub

    server = EtsyStub(per_second=per_second, access_ttl_s=token_ttl, port=port)
    server.start()
    tokens = server.authorize()
    out(f"Etsy-like server on {server.url} (shop {server.shop_id} {server.shop_name!r}, "
        f"{per_second} requests/s)")  # fmt: skip
    if save_block:
        from pydantic import SecretStr

        from designflow.orchestration.blocks import EtsyShopBlock
        from designflow.settings import Settings

        name = Settings.from_env().etsy_block
        EtsyShopBlock(
            base_url=server.url, keystring=server.keystring,
            shared_secret=SecretStr(server.shared_secret), shop_id=str(server.shop_id),
            refresh_token=SecretStr(tokens["refresh_token"]),
        ).save(name, overwrite=True)  # fmt: skip
        out(f"saved Prefect block {name!r}: uploads with --listings now publish here")
    else:
        out(f"keystring {server.keystring}; shared secret and refresh token: "
            "run with --connect to store them in a Prefect block")  # fmt: skip
    sys.stdout.flush()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    out(f"stopped; {len(server.listings)} listing(s), {len(server.requests)} request(s)")
    return 0


etsy.command("stub")(stub)
# `designflow etsy-stub`: the older name of `designflow etsy stub`, kept working but hidden.
app.command("etsy-stub", hidden=True)(stub)


@app.command()
def publish(
    design_ids: list[int] = typer.Argument(..., help="stored design ids"),
    listings: str | None = typer.Option(
        None, "--listings", metavar="FILE.csv|FILE.parquet",
        help="apply this manifest's current rows to the designs first (an edited price)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> int:  # fmt: skip
    """Publish stored designs as Etsy draft listings."""
    from contextlib import redirect_stdout

    guard_children()
    with redirect_stdout(sys.stderr):
        from designflow.flows.publish import publish_listing

        manifest = str(Path(listings).absolute()) if listings else None
        state = publish_listing(design_ids, manifest, return_state=True)
    result = state.result(raise_on_failure=False)
    if not state.is_completed():
        return fail(f"publish run failed: {result}", 1)
    if as_json:
        print_json(result)
    elif result["skipped"]:
        out(result["skipped"])
    else:
        for item in result["listings"]:
            out(f"design {item['design_id']}: Etsy listing {item['listing_id']} "
                f"({item['action']}, {len(item['images'])} image(s))")  # fmt: skip
    return 0
