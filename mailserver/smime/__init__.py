"""S/MIME (RFC 8551): CMS sign / verify / encrypt / decrypt and message protection.

Built on cryptography and asn1crypto only. Every function fed with bytes from the
network returns a result value (:class:`VerifyResult`, :class:`DecryptResult`,
:class:`UnprotectResult`); none raises on hostile input.
"""

from mailserver.smime.enveloped import Identity
from mailserver.smime.message import (
    decrypt_message,
    encrypt_message,
    sign_message,
    verify_message,
)
from mailserver.smime.protect import protect, unprotect
from mailserver.smime.results import (
    DecryptResult,
    DecryptStatus,
    Signer,
    Status,
    UnprotectResult,
    VerifyResult,
    authentication_results,
)
from mailserver.smime.trust import TrustStore, ValidationError

__all__ = [
    "DecryptResult",
    "DecryptStatus",
    "Identity",
    "Signer",
    "Status",
    "TrustStore",
    "UnprotectResult",
    "ValidationError",
    "VerifyResult",
    "authentication_results",
    "decrypt_message",
    "encrypt_message",
    "protect",
    "sign_message",
    "unprotect",
    "verify_message",
]
