"""Compare the shadow version with the champion on logged requests: ``housing-shadow-report``.

Reads the request log that ``housing-serve --shadow ALIAS`` writes (``--log``, default the data
folder's ``request_log``) and prints a Markdown report: per pair of versions, how far the
shadow's prices are from the champion's, and the drift of the requests' features against the
training rows of the base dataset (the contract's training side).
"""

from __future__ import annotations

import argparse
import sys

from housing_assets import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="housing-shadow-report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--log", default=str(settings.data_dir() / "request_log"))
    args = parser.parse_args(argv)

    from housing_assets.io.shadow import read_request_log
    from housing_assets.io.source import fetch
    from housing_assets.ml.parsing import parse_payload
    from housing_assets.ml.split import contract_split
    from housing_assets.reports.shadow import shadow_report

    log = read_request_log(args.log)
    if log.empty:
        print(f"housing-shadow-report: no request logged in {args.log}", file=sys.stderr)
        return 2
    source = fetch(settings.load().source_url)
    training, _ = contract_split(parse_payload(source.payload, source.url))
    markdown, _ = shadow_report(log, training)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
