"""sp4n's common package: event contracts, settings, database and broker plumbing.

Only what two or more services need lives here.
"""
