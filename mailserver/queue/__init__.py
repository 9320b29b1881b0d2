"""The durable outbound queue: enqueued in the same transaction as the local
copies, delivered by workers in every server process, retried with backoff,
bounced with a DSN (RFC 3464) when it cannot be delivered."""
