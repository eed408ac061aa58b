"""edged: a gateway daemon for Watson IoT / Maximo IoT compatible MQTT services."""

__version__ = "0.1.0"
