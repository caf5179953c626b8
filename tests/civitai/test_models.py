"""Reading the orchestrator's workflow JSON when it bends the schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.civitai.models import Workflow
from bot.civitai.tool_sources import URL_MARGIN


def test_a_timestamp_without_a_zone_is_read_as_utc() -> None:
    """The schema's date-times carry a zone; one without (a proxy or a new serializer) is
    taken as UTC, so comparing it with the bot's clock works instead of raising TypeError
    (which ended the delivery or the tool's source look-up with a traceback)."""
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    workflow = Workflow.model_validate(
        {
            "id": "wf",
            "status": "succeeded",
            "completedAt": later.replace(tzinfo=None).isoformat(),
            "steps": [
                {
                    "$type": "imageGen",
                    "status": "succeeded",
                    "output": {
                        "images": [
                            {
                                "id": "b0",
                                "url": "https://blobs.example/b0",
                                "urlExpiresAt": later.replace(tzinfo=None).isoformat(),
                            }
                        ]
                    },
                }
            ],
        }
    )
    [blob] = workflow.images()
    assert blob.url_expires_at == later and workflow.completed_at == later
    assert blob.url_expires_at - datetime.now(UTC) > URL_MARGIN
