"""Built-in device adapters, installed as ``edged.adapters``.

Nothing is imported eagerly: an adapter's hardware library is loaded only when a configured
device needs it. Each adapter ``NAME`` is a package with two modules:

* ``edged.adapters.NAME.config``: pydantic models only (cheap to import), used by
  ``edged check-config``: ``DeviceConfig`` (the device's ``NAME:`` section), ``Settings`` (the
  top-level ``adapters.NAME:`` section) and optionally ``cross_check()``.
* ``edged.adapters.NAME.adapter``: ``create_adapters()``, which builds the runners.
"""
