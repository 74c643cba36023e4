"""Notifications to a webhook: one message per event that someone should hear about (a failed
run, a rejected challenger, a drift or live-error warning), as a Slack-compatible JSON payload
(``text`` plus ``blocks``; Mattermost, Rocket.Chat and Teams' Slack-compatible hooks read it).

The webhook's URL is a credential (whoever has it can post): it comes from the settings
(``HOUSING_ALERT_WEBHOOK_URL_FILE`` or ``HOUSING_ALERT_WEBHOOK_URL``), is never logged, and a
webhook that cannot be reached costs a warning, never a failure of what sent it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Alert:
    title: str  # one line: what happened
    details: list[str]  # one line each: why, with the numbers
    link: str | None = None  # the run in the Dagster UI

    def payload(self) -> dict:
        """The Slack-compatible JSON body: ``text`` for every receiver, ``blocks`` for Slack."""
        lines = [f"*{self.title}*", *(f"• {line}" for line in self.details)]
        if self.link:
            lines.append(f"<{self.link}|Open the run in Dagster>")
        text = "\n".join(lines)
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }


def send_alert(url: str, alert: Alert, timeout_s: float = TIMEOUT_S) -> str | None:
    """POST ``alert`` to the webhook at ``url``. Returns None once delivered, else why not, in
    words that never include the URL (its path is the credential)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.payload()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(1024)
    except ValueError:  # urllib's message would quote the URL
        return "the webhook URL is not a valid http(s) URL"
    except urllib.error.HTTPError as exc:
        return f"the webhook answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the webhook could not be reached ({type(reason).__name__})"
    return None


def run_link(ui_url: str | None, run_id: str) -> str | None:
    return f"{ui_url.rstrip('/')}/runs/{run_id}" if ui_url else None
