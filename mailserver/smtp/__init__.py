"""SMTP: submission (587 STARTTLS, 465 implicit TLS) and intake (25), on aiosmtpd."""
