"""The serial adapter: line and frame protocols, polled instruments, NMEA, commands.

Modules: ``config`` (models, no pyserial), ``framing``, ``parsers``, ``nmea`` and ``templates``
(pure), ``port`` (the pyserial edge), ``adapter`` (the runner), ``cli`` (``edged serial monitor``).
"""
