"""The operators' trust space: the white list of domains and their certificate
DNs, and the CA certificates peer operators' certificates chain to."""
