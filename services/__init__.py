"""The four sp4n services (intake, routing, sla, notify) and the ``sp4n`` command."""
