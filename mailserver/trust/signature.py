"""The white list's own signature: an enveloped XML-DSig signature (W3C xmldsig-core1 §6.6.4
enveloped-signature transform) over the whole document, checked with signxml (lxml's C14N,
exclusive or inclusive) against the national authority's certificate before a list is used.

``[trust] signer`` names a PEM file: the authority's signing certificate itself (pinned:
the signature must verify with its key), or CA certificates (the signer's certificate,
carried in the signature's ``KeyInfo/X509Data``, must chain to one of them). With a signer
configured, ``require_signature`` (default true) refuses unsigned lists; a list whose
signature is present but wrong is always refused. Only the signed bytes are read
afterwards, so nothing outside the signature (wrapping attacks) reaches the trust space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from mailserver.settings import Settings
from mailserver.trust.whitelist import WhiteList, WhiteListError, parse_whitelist

log = logging.getLogger("mailserver.trust")

DSIG = "http://www.w3.org/2000/09/xmldsig#"
# RSA-SHA256 is what the authority uses; stronger hashes and ECDSA are accepted, SHA-1 never.
_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384,
                      SignatureMethod.RSA_SHA512, SignatureMethod.ECDSA_SHA256,
                      SignatureMethod.ECDSA_SHA384})
EXCLUSIVE_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


@dataclass(frozen=True)
class SignaturePolicy:
    """Who must have signed the list, and whether an unsigned list is refused."""

    signer_file: Path | None = None
    pinned: x509.Certificate | None = None  # the signer's own certificate
    require: bool = True

    @property
    def checks(self) -> bool:
        return self.signer_file is not None


def policy_for(settings: Settings) -> SignaturePolicy:
    """The policy ``[trust] signer`` / ``require_signature`` describe."""
    signer = settings.trust.signer
    return load_policy(settings.path(signer) if signer else None,
                       settings.trust.require_signature)


def load_policy(signer_file: Path | None, require: bool) -> SignaturePolicy:
    """Read ``[trust] signer``: one end-entity certificate is pinned, CA certificates are
    anchors for the certificate the signature carries."""
    if signer_file is None:
        return SignaturePolicy(require=require)
    try:
        certificates = x509.load_pem_x509_certificates(signer_file.read_bytes())
    except (OSError, ValueError) as error:
        raise WhiteListError(f"trust.signer {signer_file}: cannot read a PEM certificate: "
                             f"{error}") from error
    if len(certificates) == 1 and not _is_ca(certificates[0]):
        return SignaturePolicy(signer_file, certificates[0], require)
    return SignaturePolicy(signer_file, None, require)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints)
                    .value.ca)
    except x509.ExtensionNotFound:
        return False


def _signature_elements(data: bytes) -> int:
    """How many ds:Signature elements the (already well-formed, DTD-free) list holds."""
    root = etree.fromstring(data, parser=_parser())
    return len(root.findall(f".//{{{DSIG}}}Signature"))


def _parser() -> etree.XMLParser:
    # No entities, no network, no DTD (defusedxml has already refused any DTD).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)


def read_whitelist(data: bytes, policy: SignaturePolicy) -> WhiteList:
    """The list in ``data`` once its signature satisfies ``policy``; ``WhiteListError``
    with the reason otherwise (the caller keeps the previous list)."""
    whitelist = parse_whitelist(data)  # defusedxml first: no DTD, no entities, shape
    count = _signature_elements(data)
    if not policy.checks:
        if count:
            log.warning("white list signature not checked: no trust.signer configured")
        return whitelist
    if count == 0:
        if policy.require:
            raise WhiteListError("the white list is not signed and trust.require_signature "
                                 "is true")
        log.warning("white list accepted unsigned (trust.require_signature = false)")
        return whitelist
    if count != 1:
        raise WhiteListError(f"the white list holds {count} signatures; exactly one expected")
    return parse_whitelist(_verified_bytes(data, policy))


def _verified_bytes(data: bytes, policy: SignaturePolicy) -> bytes:
    config = SignatureConfiguration(
        location="./",  # enveloped, a child of the root element
        expect_references=1,
        signature_methods=_METHODS,
        digest_algorithms=_DIGESTS,
    )
    result: VerifyResult | list[VerifyResult]
    try:
        if policy.pinned is not None:
            result = XMLVerifier().verify(data, x509_cert=policy.pinned, expect_config=config,
                                          parser=_parser())
        else:
            result = XMLVerifier().verify(data, ca_pem_file=str(policy.signer_file),
                                          expect_config=config, parser=_parser())
    except (SignXMLException, InvalidInput, ValueError) as error:
        raise WhiteListError(f"the white list signature does not verify: {error}") from error
    if not isinstance(result, VerifyResult):  # expect_references=1 gives one result
        raise WhiteListError("the white list signature must hold exactly one reference")
    references = result.signature_xml.findall(f"{{{DSIG}}}SignedInfo/{{{DSIG}}}Reference")
    # xmldsig-core1 §4.4.3.2: URI="" is the whole document; any other reference would
    # leave part of the list unsigned.
    if len(references) != 1 or references[0].get("URI") != "":
        raise WhiteListError("the white list signature must cover the whole document "
                             "(Reference URI=\"\")")
    signed = result.signed_xml
    if signed is None or etree.QName(signed).localname != etree.QName(
            etree.fromstring(data, parser=_parser())).localname:
        raise WhiteListError("the white list signature does not cover the list's root")
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def sign_whitelist(data: bytes, certificate: x509.Certificate,
                   key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                   chain: list[x509.Certificate] | None = None, *,
                   c14n: CanonicalizationMethod = EXCLUSIVE_C14N) -> bytes:
    """Sign a list as the authority does (enveloped, exclusive C14N, RSA-SHA256): for
    tests and demonstrations with the local PKI."""
    parse_whitelist(data)  # refuse to sign what we would refuse to read
    root = etree.fromstring(data, parser=_parser())
    method = SignatureMethod.RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) \
        else SignatureMethod.ECDSA_SHA256
    signer = XMLSigner(signature_algorithm=method, digest_algorithm=DigestAlgorithm.SHA256,
                       c14n_algorithm=c14n)
    signed = signer.sign(root, key=key, cert=[certificate, *(chain or [])])
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
