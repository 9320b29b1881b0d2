"""The mail core: SMTP, IMAP, message store, queue and S/MIME."""

__version__ = "0.1.0"
