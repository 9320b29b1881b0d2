"""Structured health messages: IHE XDM packages, CDA R2 documents, MSSanté headers
and attachment sniffing. Pure functions: bytes in, values out, a list of problems
instead of exceptions for hostile input."""
