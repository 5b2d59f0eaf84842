"""Faithful fakes of vendor robot and camera packages: same names, signatures and units.

Each module stands in for a vendor module (inject it with ``monkeypatch.setitem(sys.modules,
...)`` or the driver's constructor parameter). The arms are ideal servos: a commanded target
becomes the measured pose at once, so a test reads back exactly what the driver sent, in the
vendor's own units.
"""
