"""intake's domain: the ``Complaint`` aggregate (lifecycle actions, scope), the effects of
downstream events, and the typed values the repository reads and writes. Pure: no I/O."""
