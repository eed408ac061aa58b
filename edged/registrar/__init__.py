"""Registration of attached devices with the platform: the registrar (docs/registration.md)."""

from edged.registrar.notify import Kind
from edged.registrar.registrar import Registrar, RegistrationRefused
from edged.registrar.state import State

__all__ = ["Kind", "Registrar", "RegistrationRefused", "State"]
