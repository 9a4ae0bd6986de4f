"""What the tests know about the mails the notification service writes."""

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
