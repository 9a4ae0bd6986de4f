"""What the tests know about the mails the notification service writes, and when it is done."""

from __future__ import annotations

from fastapi import FastAPI

from tests.support.wait import eventually

# Every header build_message writes; a mail with any other header line has been tampered with.
HEADERS_WE_WRITE = (
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Content-Language",
    "MIME-Version",
    "Content-Type",
)


async def processing_ended(app: FastAPI) -> None:
    """Nothing more will be sent for the rows that are final now: the dispatcher has completed a pass
    that began after they became final (a sent or failed row is never claimed again)."""
    dispatcher = app.state.dispatcher
    start = dispatcher.passes

    async def a_later_pass_completed() -> bool:
        dispatcher.wake()
        return dispatcher.passes >= start + 2

    await eventually(a_later_pass_completed, "a dispatcher pass after the last mark")
