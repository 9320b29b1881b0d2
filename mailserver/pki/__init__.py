"""Certificates: the deployment's local CA and server certificate (``local_ca``, used by
``mss init``), and the local PKI modelled on IGC-Santé (``authority``, ``local_pki``):
root and sub-CAs, issuing, PKCS#12, revocation and CRLs, trust anchors. Issued
certificates are registered through ``registry.register_certificate``."""
