"""IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server.

wire.py reads commands with hard limits; syntax.py turns their bytes into tokens;
session.py runs the state machine; commands in folders.py, messages.py, search.py;
server.py binds the listeners (143 STARTTLS, 993 implicit TLS).
"""
