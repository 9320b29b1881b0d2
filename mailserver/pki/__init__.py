"""Certificates: the deployment's local CA and server certificate (the S/MIME
and trust-space issues extend this room)."""
