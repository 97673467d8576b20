"""What happened in the registry, recorded once and read twice: webhook endpoints are sent it in CNCF
Distribution's envelope (sender.py), and operators search it as the audit trail (audit.py).

journal.py writes the rows: inside the transaction that makes a change (a push, a mount, a delete),
or in batches for what changes nothing (pulls, logins, denials, admin actions). The HTTP request's
who and where reach it through a context variable (context.py) that the API layer sets.
"""
