"""Move the serving alias back: ``housing-rollback --reason "..." [--to VERSION]``.

Without ``--to`` the champion returns to the version that was champion before it. Serving
through ``models:/housing_price_model@champion`` follows at once (the alias is resolved on load).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from housing_assets import settings
from housing_assets.io.redaction import redact_url
from housing_assets.io.registry import MODEL_NAME, RollbackError, rollback_champion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="housing-rollback", description=__doc__.splitlines()[0])
    parser.add_argument("--reason", required=True, help="why (recorded on both versions)")
    parser.add_argument("--to", dest="to_version", help="version to serve (default: previous)")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--who", default=getpass.getuser(), help="recorded as rolled_back_by")
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    uri = settings.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        old, new = rollback_champion(client, args.model, args.reason, args.who, args.to_version)
    except RollbackError as exc:
        print(f"housing-rollback: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model}: champion v{old} -> v{new} ({redact_url(uri)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
