"""intake: the HTTP and broker edge where complaints enter sp4n.

It owns the complaint record and the reporter's identity; every other service only ever
sees the pseudonymous ``reporter_ref``.
"""
