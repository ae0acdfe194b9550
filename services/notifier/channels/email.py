"""E-mail over SMTP (aiosmtplib), plain text with an HTML alternative.

The Message-ID is derived from the message id (`<id@domain>`), so a re-send
after a crash carries the same one: a mail system or client that de-duplicates
on Message-ID shows one message. Plain SMTP itself has no idempotency, so a
notifier crash between the server's "250 OK" and the outbox's "delivered"
record can give the client one duplicate e-mail per crash (README: Delivery
guarantees).

Outcomes: accepted -> delivered; SMTP 4xx, timeouts and connection errors
transient; SMTP 5xx (unknown mailbox, rejected content, failed login) and a
missing STARTTLS permanent.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from rehabgate.services.common.settings import NotifierSettings
from rehabgate.services.notifier.contacts import Contact
from rehabgate.services.notifier.messages import Composed

from .base import ChannelName, PermanentError, TransientError


class EmailChannel:
    name: ChannelName = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        security: str = "auto",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._security = security
        self._username, self._password = username, password
        self._timeout = timeout_s
        domain = parseaddr(sender)[1].rpartition("@")[2]
        self._domain = domain or "rehabgate.invalid"

    @classmethod
    def from_settings(cls, settings: NotifierSettings) -> EmailChannel | None:
        if not settings.smtp_host:
            return None
        if not settings.smtp_from:
            raise SystemExit("notifier: REHABGATE_SMTP_HOST needs REHABGATE_SMTP_FROM too")
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            settings.smtp_host, settings.smtp_port, settings.smtp_from, settings.smtp_security,
            settings.smtp_username, password, settings.smtp_timeout_s,
        )  # fmt: skip

    def message_id_header(self, message_id: str) -> str:
        return f"<{message_id}@{self._domain}>"

    def build(self, composed: Composed, contact: Contact) -> EmailMessage:
        message = composed.message
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = Address(addr_spec=contact.address.get_secret_value())
        mail["Subject"] = message.title
        mail["Message-ID"] = self.message_id_header(str(message.message_id))
        mail["Date"] = format_datetime(message.created_at)
        mail["Content-Language"] = message.locale
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.body + "\n")
        mail.add_alternative(composed.html, subtype="html")
        return mail

    async def send(self, composed: Composed, contact: Contact) -> None:
        try:
            mail = self.build(composed, contact)
        except (ValueError, IndexError) as exc:  # an address the e-mail package refuses
            raise PermanentError(f"email address unusable ({type(exc).__name__})") from None
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                timeout=self._timeout,
                use_tls=self._security == "tls",
                start_tls={"auto": None, "starttls": True, "tls": False, "none": False}[
                    self._security
                ],
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({r.code for r in exc.recipients})
            kind = TransientError if all(400 <= c < 500 for c in codes) else PermanentError
            raise kind(f"smtp recipient refused {codes}") from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = TransientError if 400 <= exc.code < 500 else PermanentError
            raise kind(f"smtp {exc.code} ({type(exc).__name__})") from None
        except aiosmtplib.SMTPNotSupported:
            raise PermanentError("smtp server lacks a required extension (STARTTLS?)") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientError(f"smtp {type(exc).__name__}") from None
