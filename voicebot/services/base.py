"""What the dialog may ask of the bank's systems. A CRM adapter implements ``Services``.

Methods are blocking (a real adapter talks HTTP or SQL); the pipeline calls the dialog, and so
these, from a worker thread. Money is ``Decimal``; identifiers are strings.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from voicebot.errors import VoicebotError


class ServiceError(VoicebotError):
    """The back office refused or failed an action; ``message`` is safe to tell the caller."""


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    phone: str


@dataclass(frozen=True)
class Account:
    id: str
    kind: str  # checking | savings | credit
    balance: Decimal


@dataclass(frozen=True)
class Card:
    last_four: str
    kind: str  # debit | credit
    status: str  # active | blocked | inactive


@dataclass(frozen=True)
class Transaction:
    day: date
    merchant: str
    amount: Decimal  # negative: money out


@dataclass(frozen=True)
class PaymentDue:
    due: date
    statement_balance: Decimal
    minimum: Decimal


class Services(Protocol):
    def find_customer(self, phone: str) -> Customer | None:
        """Caller identification from the caller ID (ANI)."""
        ...

    def verify(self, customer_id: str, answer: str) -> bool:
        """Check the spoken answer to the verification question (the demo asks for the ZIP code)."""
        ...

    def accounts(self, customer_id: str) -> list[Account]: ...

    def transactions(self, customer_id: str, limit: int = 3) -> list[Transaction]: ...

    def cards(self, customer_id: str) -> list[Card]: ...

    def set_card_status(self, customer_id: str, last_four: str, status: str) -> Card:
        """Block or activate a card; ``ServiceError`` if the customer has no such card."""
        ...

    def pay_credit_card(self, customer_id: str, amount: Decimal) -> Account:
        """Move ``amount`` from checking to the credit card; returns the credit account."""
        ...

    def payment_due(self, customer_id: str) -> PaymentDue: ...

    def transfer_to_savings(self, customer_id: str, amount: Decimal) -> tuple[Account, Account]:
        """Move money from checking to savings; returns (checking, savings) after."""
        ...

    def open_case(self, customer_id: str, caller_id: str | None, kind: str, details: str) -> str:
        """Record a request for a back-office team (a complaint, a dispute, a PIN reset,
        an address change...); returns the reference the caller is given. ``customer_id``
        is empty when the caller was not identified."""
        ...
