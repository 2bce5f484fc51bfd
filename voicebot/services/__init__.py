"""Back-office services: the seam between the dialog and a CRM / core-banking system.

``base.py`` is the interface a real adapter implements; ``demo_bank.py`` implements it on
SQLite with seeded demo customers so every flow really reads and changes data.
"""

from voicebot.services.base import (
    Account,
    Card,
    Customer,
    PaymentDue,
    ServiceError,
    Services,
    Transaction,
)

__all__ = [
    "Account",
    "Card",
    "Customer",
    "PaymentDue",
    "ServiceError",
    "Services",
    "Transaction",
]
