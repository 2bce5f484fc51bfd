"""Back-office actions that flows name in their ``action:`` key.

Each action takes the services, the verified customer and the filled slots, does the work,
and returns the fields its ``done`` template may use, already phrased for speech.
A ``ServiceError`` is a refusal the caller hears (no such card, not enough money).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from voicebot.services.base import Services

Action = Callable[[Services, str, dict[str, Any]], dict[str, str]]
# Context an action may read beside the flow's own slots, filled in by the dialog manager.
CALLER_ID_SLOT = "_caller_id"
FLOW_SLOT = "_flow"  # the flow's name: also the kind of a back-office case


def say_money(amount: Decimal) -> str:
    """ "2,415 dollars", "12 dollars and 50 cents": read the same way by any TTS voice."""
    amount = abs(amount).quantize(Decimal("0.01"))
    dollars, cents = int(amount), int((amount % 1) * 100)
    text = f"{dollars:,} dollar{'s' if dollars != 1 else ''}"
    if cents:
        text += f" and {cents} cent{'s' if cents != 1 else ''}"
    return text


def say_date(day: date) -> str:
    suffix = (
        "th" if 11 <= day.day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    )
    return f"{day:%A}, {day:%B} {day.day}{suffix}"


def digit_groups(n: int) -> list[int]:
    """How ``n`` digits are read back, as people say them: a phone number 3-3-4 (with its
    country code 1-3-3-4), a card 4-4-4-4, anything else in threes (the last group 2 to 4)."""
    if n <= 4:
        return [n] if n else []
    if n in (10, 11):
        return [1, 3, 3, 4][11 - n :]
    if n % 4 == 0:
        return [4] * (n // 4)
    threes = [3] * (n // 3)
    if n % 3 == 1:
        threes[-1] = 4
    elif n % 3 == 2:
        threes.append(2)
    return threes


def say_digits(digits: str) -> str:
    """Digits one by one, in groups with a pause between them: "5 5 5, 1 2 3, 0 0 0 1"."""
    groups, start = [], 0
    for size in digit_groups(len(digits)):
        groups.append(" ".join(digits[start : start + size]))
        start += size
    return ", ".join(groups)


def balances(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    accounts = services.accounts(customer)
    parts = [f"{a.kind} account has {say_money(a.balance)}" for a in accounts if a.kind != "credit"]
    return {"balances": ", and your ".join(parts)}


def transactions(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    items = services.transactions(customer, limit=3)
    spoken = [
        f"{'a deposit of ' if t.amount > 0 else ''}{say_money(t.amount)} "
        f"{'from' if t.amount > 0 else 'at'} {t.merchant} on {t.day:%A}"
        for t in items
    ]
    return {"transactions": "; ".join(spoken) or "no recent transactions"}


def _set_card(status: str) -> Action:
    def action(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
        card = services.set_card_status(customer, slots["card_last_four"], status)
        return {"card": f"{card.kind} card ending in {say_digits(card.last_four)}"}

    return action


def pay_credit_card(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    credit = services.pay_credit_card(customer, slots["amount"])
    owed = -credit.balance
    return {
        "credit_balance": say_money(owed) if owed > 0 else "fully paid off",
    }


def payment_due(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    due = services.payment_due(customer)
    return {
        "due_date": say_date(due.due),
        "statement_balance": say_money(due.statement_balance),
        "minimum": say_money(due.minimum),
    }


def open_case(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    """A request a back-office team completes (complaint, dispute, PIN reset...): the case
    carries the caller's own words if the flow asked for them, else the filled slots."""
    filled = {k: v for k, v in slots.items() if not k.startswith("_")}
    details = filled.pop("details", None) or "; ".join(f"{k}: {v}" for k, v in filled.items())
    kind = slots[FLOW_SLOT]
    reference = services.open_case(customer, slots.get(CALLER_ID_SLOT), kind, details or kind)
    return {"reference": say_digits(reference)}


def report_fraud(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    """Block the card first (stop the damage), then open the fraud case."""
    return _set_card("blocked")(services, customer, slots) | open_case(services, customer, slots)


def transfer_to_savings(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    checking, savings = services.transfer_to_savings(customer, slots["amount"])
    return {
        "checking_balance": say_money(checking.balance),
        "savings_balance": say_money(savings.balance),
    }


def answer(services: Services, customer: str, slots: dict[str, Any]) -> dict[str, str]:
    """No back-office call: the flow exists so the caller is verified before its ``done``
    text (account figures a pack states itself, until a real back office answers) is read."""
    return {}


@dataclass(frozen=True)
class ActionSpec:
    """An action and its contract with a pack, checked when the pack loads: the slots its
    flow must fill, and the fields its ``done`` template may use."""

    run: Action
    needs: frozenset[str] = frozenset()
    gives: frozenset[str] = frozenset()


def _spec(run: Action, needs: tuple[str, ...] = (), gives: tuple[str, ...] = ()) -> ActionSpec:
    return ActionSpec(run, frozenset(needs), frozenset(gives))


ACTIONS: dict[str, ActionSpec] = {
    "answer": _spec(answer),
    "balances": _spec(balances, gives=("balances",)),
    "transactions": _spec(transactions, gives=("transactions",)),
    "block_card": _spec(_set_card("blocked"), ("card_last_four",), ("card",)),
    "activate_card": _spec(_set_card("active"), ("card_last_four",), ("card",)),
    "pay_credit_card": _spec(pay_credit_card, ("amount",), ("credit_balance",)),
    "payment_due": _spec(payment_due, gives=("due_date", "statement_balance", "minimum")),
    "open_case": _spec(open_case, gives=("reference",)),
    "report_fraud": _spec(report_fraud, ("card_last_four",), ("card", "reference")),
    "transfer_to_savings": _spec(
        transfer_to_savings, ("amount",), ("checking_balance", "savings_balance")
    ),
}


def slot_for_speech(name: str, value: Any) -> str:
    """How a filled slot is read back in a confirmation."""
    if isinstance(value, Decimal):
        return say_money(value)
    if isinstance(value, date):
        return say_date(value)
    if isinstance(value, str) and value.isdigit():
        return say_digits(value)
    return str(value)
