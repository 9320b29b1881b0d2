"""Building a conforming structured message, as practice software sends it:
a CDA R2 document (level 1, the PDF in ``nonXMLBody``, unless one is given),
an IHE XDM package holding it (ITI TF-3 §4.2.4) and the MSSanté headers and
subject. Pure: values in, bytes out."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from xml.sax.saxutils import escape, quoteattr

from mailserver.health import xdm
from mailserver.health.cda import CdaDocument

DOCUMENT_NAME = "DOC0001.XML"


@dataclass(frozen=True)
class Patient:
    ins: str  # a qualified INS (NIR or NIA)
    family: str
    given: str
    birth_date: dt.date
    oid: str = xdm.INS_NIR


@dataclass(frozen=True)
class DocumentInfo:
    type_code: str = "11502-2"  # LOINC "Laboratory report"
    type_display: str = "CR d'examens biologiques"
    title: str = "Compte rendu"
    author: str = ""  # the sending software or practitioner, XCN or plain name
    institution: str = ""
    created: dt.datetime | None = None


def _uid() -> str:
    """A unique OID-form identifier (2.25 arc, ITU-T X.667 §8)."""
    return f"2.25.{uuid.uuid4().int}"


def _dtm(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def cda_level1(patient: Patient, info: DocumentInfo, pdf: bytes) -> bytes:
    """A CDA R2 with the PDF as its non-XML body (CDA R2 §4.3.1)."""
    created = info.created or dt.datetime.now(dt.UTC)
    body = base64.b64encode(pdf).decode("ascii")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root={quoteattr(_uid())}/>
  <code code={quoteattr(info.type_code)} codeSystem="{xdm.LOINC}"
        displayName={quoteattr(info.type_display)}/>
  <title>{escape(info.title)}</title>
  <effectiveTime value="{_dtm(created)}+0000"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole>
    <id root={quoteattr(patient.oid)} extension={quoteattr(patient.ins)}/>
    <patient>
      <name><given>{escape(patient.given)}</given><family>{escape(patient.family)}</family></name>
      <birthTime value="{patient.birth_date:%Y%m%d}"/>
    </patient>
  </patientRole></recordTarget>
  <author><time value="{_dtm(created)}+0000"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" nullFlavor="UNK"/>
    <assignedPerson><name><family>{escape(info.author)}</family></name></assignedPerson>
  </assignedAuthor></author>
  <component><nonXMLBody>
    <text mediaType="application/pdf" representation="B64">{body}</text>
  </nonXMLBody></component>
</ClinicalDocument>
""".encode()


def _slot(name: str, *values: str) -> str:
    items = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{items}</rim:ValueList></rim:Slot>'


def _classification(scheme: str, target: str, node: str, coding: str, name: str) -> str:
    return (f'<rim:Classification id="{uuid.uuid4().urn}" classificationScheme="{scheme}" '
            f'classifiedObject="{target}" nodeRepresentation={quoteattr(node)}>'
            f'{_slot("codingScheme", coding)}'
            f'<rim:Name><rim:LocalizedString value={quoteattr(name)}/></rim:Name>'
            "</rim:Classification>")


def _author(scheme: str, target: str, info: DocumentInfo) -> str:
    slots = _slot("authorPerson", info.author)
    if info.institution:
        slots += _slot("authorInstitution", info.institution)
    return (f'<rim:Classification id="{uuid.uuid4().urn}" classificationScheme="{scheme}" '
            f'classifiedObject="{target}" nodeRepresentation="">{slots}</rim:Classification>')


def _identifier(scheme: str, target: str, value: str, name: str) -> str:
    return (f'<rim:ExternalIdentifier id="{uuid.uuid4().urn}" identificationScheme="{scheme}" '
            f'registryObject="{target}" value={quoteattr(value)}>'
            f'<rim:Name><rim:LocalizedString value="{name}"/></rim:Name>'
            "</rim:ExternalIdentifier>")


def metadata_xml(patient: Patient, info: DocumentInfo, document: bytes, source_id: str,
                 mime_type: str = "text/xml", uri: str = DOCUMENT_NAME) -> bytes:
    """The ebRIM SubmitObjectsRequest of one document (ITI TF-3 §4.2.3, §4.2.4)."""
    created = info.created or dt.datetime.now(dt.UTC)
    patient_id = str(xdm.PatientId(patient.ins, patient.oid))
    doc = "Document01"
    ss = "SubmissionSet01"
    sha1 = hashlib.sha1(document, usedforsecurity=False).hexdigest()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
<rim:RegistryObjectList>
<rim:ExtrinsicObject id="{doc}" mimeType={quoteattr(mime_type)} objectType="{xdm.DOC_ENTRY_TYPE}">
{_slot("creationTime", _dtm(created))}
{_slot("hash", sha1)}
{_slot("size", str(len(document)))}
{_slot("URI", uri)}
{_slot("languageCode", "fr-FR")}
{_slot("sourcePatientId", patient_id)}
<rim:Name><rim:LocalizedString value={quoteattr(info.title)}/></rim:Name>
{_author(xdm.DOC_AUTHOR, doc, info)}
{_classification(xdm.DOC_CLASS_CODE, doc, "11", "1.2.250.1.213.1.1.4.1", "Compte rendu")}
{_classification(xdm.DOC_TYPE_CODE, doc, info.type_code, xdm.LOINC, info.type_display)}
{_classification(xdm.DOC_FORMAT_CODE, doc, "urn:ihe:iti:xds-sd:pdf:2008",
                 "1.3.6.1.4.1.19376.1.2.3", "PDF")}
{_identifier(xdm.DOC_PATIENT_ID, doc, patient_id, "XDSDocumentEntry.patientId")}
{_identifier(xdm.DOC_UNIQUE_ID, doc, _uid(), "XDSDocumentEntry.uniqueId")}
</rim:ExtrinsicObject>
<rim:RegistryPackage id="{ss}">
{_slot("submissionTime", _dtm(created))}
<rim:Name><rim:LocalizedString value={quoteattr(info.title)}/></rim:Name>
{_author(xdm.SET_AUTHOR, ss, info)}
{_classification(xdm.SET_CONTENT_TYPE, ss, "04", "1.2.250.1.213.1.1.4.4", "Consultation")}
{_identifier(xdm.SET_UNIQUE_ID, ss, _uid(), "XDSSubmissionSet.uniqueId")}
{_identifier(xdm.SET_SOURCE_ID, ss, source_id, "XDSSubmissionSet.sourceId")}
{_identifier(xdm.SET_PATIENT_ID, ss, patient_id, "XDSSubmissionSet.patientId")}
</rim:RegistryPackage>
<rim:Classification id="{uuid.uuid4().urn}" classifiedObject="{ss}"
    classificationNode="{xdm.SET_NODE}"/>
<rim:Association id="{uuid.uuid4().urn}"
    associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    sourceObject="{ss}" targetObject="{doc}">{_slot("SubmissionSetStatus", "Original")}
</rim:Association>
</rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>
""".encode()


def xdm_zip(metadata: bytes, documents: dict[str, bytes]) -> bytes:
    """The package: INDEX.HTM, README.TXT, IHE_XDM/SUBSET01/{METADATA.XML, documents}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("INDEX.HTM", "<html><body><p>IHE XDM</p><ul>" + "".join(
            f'<li><a href="{xdm.SUBSET}{escape(n)}">{escape(n)}</a></li>' for n in documents
        ) + "</ul></body></html>")
        archive.writestr("README.TXT", "IHE XDM package (ITI TF-1 §16)\r\n")
        archive.writestr(xdm.METADATA, metadata)
        for name, data in documents.items():
            archive.writestr(xdm.SUBSET + name, data)
    return buffer.getvalue()


def subject_line(label: str, patient: Patient) -> str:
    """``XDM/1.0/DDM+<label> <FAMILY> <given> <birth date>`` (one patient per message)."""
    return (f"XDM/1.0/DDM+{label} {patient.family.upper()} {patient.given} "
            f"{patient.birth_date:%Y%m%d}")


def patient_from_cda(cda: CdaDocument) -> Patient | None:
    ins = cda.ins
    if ins is None or cda.birth_date is None:
        return None
    return Patient(ins.extension, cda.family, cda.given, cda.birth_date, ins.root)


def structured_message(
    *, sender: str, recipient: str, patient: Patient, info: DocumentInfo, pdf: bytes,
    pdf_name: str = "document.pdf", cda: bytes | None = None, subject: str | None = None,
    software: str = "mss-send", text: str = "",
) -> EmailMessage:
    """The whole message: text, the PDF and IHE_XDM.zip, with the MSSanté headers."""
    document = cda if cda is not None else cda_level1(patient, info, pdf)
    package = xdm_zip(metadata_xml(patient, info, document, source_id=_uid()),
                      {DOCUMENT_NAME: document})
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject or subject_line(info.title, patient)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["X-MSS-CODECDA"] = info.type_code
    qualified = patient.oid in (xdm.INS_NIR, xdm.INS_NIA, xdm.INS_NIR_TEST, xdm.INS_NIA_TEST)
    message["X-MSS-INS"] = "O" if qualified else "N"
    message["X-MSS-NIL"] = software
    message.set_content(text or f"{info.title}\r\nPatient : {patient.family.upper()} "
                        f"{patient.given}\r\n")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=pdf_name)
    message.add_attachment(package, maintype="application", subtype="zip",
                           filename="IHE_XDM.zip")
    return message
