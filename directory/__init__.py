"""The professional directory ("Annuaire"): who is behind each address.

Mailboxes (PER / ORG / APP / CAB professionals, PAT patients) live here from the
first day; the mail core's accounts are these records, never a copy.
"""
