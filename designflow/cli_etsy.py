"""`designflow etsy ...` and `designflow publish`: connect a shop, run the local Etsy-like
server, publish stored designs. Secrets are read from the environment or a prompt, never
from the command line (where `ps` and shell history would keep them)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading


def add_commands(sub: argparse._SubParsersAction) -> None:
    etsy = sub.add_parser("etsy", help="Etsy shop connection and the local Etsy-like server")
    etsy_sub = etsy.add_subparsers(dest="etsy_command")

    con = etsy_sub.add_parser(
        "connect",
        help="save the shop's credentials in a Prefect block (secrets from "
        "ETSY_SHARED_SECRET / ETSY_REFRESH_TOKEN or a prompt)",
    )
    con.add_argument("--base-url", required=True, help="https://api.etsy.com for the real Etsy")
    con.add_argument("--keystring", required=True, help="the app's API keystring")
    con.add_argument("--shop-id", required=True)
    con.add_argument("--block", default=None, help="block name (default DESIGNFLOW_ETSY_BLOCK)")
    con.set_defaults(handler=_cmd_connect)

    stub = etsy_sub.add_parser("stub", help="run the local Etsy-like server on 127.0.0.1")
    _stub_arguments(stub)
    # `designflow etsy-stub` is the same command, under the name the docs use.
    _stub_arguments(sub.add_parser("etsy-stub", help="run the local Etsy-like server"))

    pub = sub.add_parser("publish", help="publish stored designs as Etsy draft listings")
    pub.add_argument("design_ids", nargs="+", type=int)
    pub.add_argument("--json", action="store_true")
    pub.set_defaults(handler=_cmd_publish)


def _stub_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--per-second", type=int, default=5)
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="access token lifetime (s)")
    parser.add_argument(
        "--connect", action="store_true", help="also save a block that points designflow at it"
    )
    parser.set_defaults(handler=_cmd_stub)


def _cmd_connect(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from tasks.blocks import EtsyShopBlock
    from tasks.resources import current_settings

    secret = os.environ.get("ETSY_SHARED_SECRET") or getpass.getpass("Etsy shared secret: ")
    refresh = os.environ.get("ETSY_REFRESH_TOKEN") or getpass.getpass("Etsy refresh token: ")
    name = args.block or current_settings().etsy_block
    EtsyShopBlock(
        base_url=args.base_url, keystring=args.keystring, shared_secret=SecretStr(secret),
        shop_id=args.shop_id, refresh_token=SecretStr(refresh),
    ).save(name, overwrite=True)  # fmt: skip
    print(f"saved Etsy shop {args.shop_id} in Prefect block {name!r}")
    return 0


def _cmd_stub(args: argparse.Namespace) -> int:
    from designflow.etsy_stub import EtsyStub

    stub = EtsyStub(per_second=args.per_second, access_ttl_s=args.token_ttl, port=args.port)
    stub.start()
    tokens = stub.authorize()
    print(f"Etsy-like server on {stub.url} (shop {stub.shop_id} {stub.shop_name!r}, "
          f"{args.per_second} requests/s)", flush=True)  # fmt: skip
    if args.connect:
        from pydantic import SecretStr

        from tasks.blocks import EtsyShopBlock
        from tasks.resources import current_settings

        name = current_settings().etsy_block
        EtsyShopBlock(
            base_url=stub.url, keystring=stub.keystring, shared_secret=SecretStr(stub.shared_secret),
            shop_id=str(stub.shop_id), refresh_token=SecretStr(tokens["refresh_token"]),
        ).save(name, overwrite=True)  # fmt: skip
        print(f"saved Prefect block {name!r}: uploads with --listings now publish here", flush=True)
    else:
        print(f"keystring {stub.keystring}; shared secret and refresh token: "
              "run with --connect to store them in a Prefect block", flush=True)  # fmt: skip
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(5):
            pass
    except KeyboardInterrupt:
        pass
    stub.stop()
    print(f"stopped; {len(stub.listings)} listing(s), {len(stub.requests)} request(s)")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        from flows.publish import publish_listing

        state = publish_listing(args.design_ids, return_state=True)
    result = state.result(raise_on_failure=False)
    if not state.is_completed():
        print(f"designflow: publish run failed: {result}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif result["skipped"]:
        print(result["skipped"])
    else:
        for item in result["listings"]:
            print(f"design {item['design_id']}: Etsy listing {item['listing_id']} "
                  f"({item['action']}, {len(item['images'])} image(s))")  # fmt: skip
    return 0
