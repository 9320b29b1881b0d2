"""DKIM (RFC 6376): per-domain keys, signing of outgoing mail, verification of
incoming mail recorded in Authentication-Results (RFC 8601)."""
