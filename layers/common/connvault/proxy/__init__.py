"""The proxy's rules, with no I/O: where a request may go (``paths``), which headers cross (``headers``), and how
the credential is put on it (``credentials``). ``connvault.services.proxy`` sends it."""
