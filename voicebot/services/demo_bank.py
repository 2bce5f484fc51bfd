"""A demo core-banking system on SQLite, seeded with a few customers.

It is deliberately a real database, not a dict: flows change data (blocked cards, payments)
and a second call sees the change. ``DemoBank(path)`` opens or creates the file; the default
``:memory:`` gives every process a fresh bank.
"""

import sqlite3
import threading
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from voicebot.dialog.slots import parse_digits
from voicebot.services.base import (
    Account,
    Card,
    Customer,
    PaymentDue,
    ServiceError,
    Transaction,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT UNIQUE NOT NULL, zip_code TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
    kind TEXT NOT NULL, balance_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    last_four TEXT NOT NULL, customer_id TEXT NOT NULL REFERENCES customers(id),
    kind TEXT NOT NULL, status TEXT NOT NULL, PRIMARY KEY (customer_id, last_four)
);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL REFERENCES accounts(id),
    day TEXT NOT NULL, merchant TEXT NOT NULL, amount_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT, caller_id TEXT,
    kind TEXT NOT NULL, details TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS statements (
    customer_id TEXT PRIMARY KEY REFERENCES customers(id), due TEXT NOT NULL,
    balance_cents INTEGER NOT NULL, minimum_cents INTEGER NOT NULL
);
"""

# (id, name, phone, ZIP code, [(account id, kind, balance cents)], [(last four, kind, status)])
DEMO_CUSTOMERS = [
    (
        "c1",
        "Alex Morgan",
        "+15551230001",
        "94107",
        [
            ("c1-chk", "checking", 241500),
            ("c1-sav", "savings", 802000),
            ("c1-cc", "credit", -62000),
        ],
        [("4567", "debit", "active"), ("8812", "credit", "active")],
    ),
    (
        "c2",
        "Sam Lee",
        "+15551230002",
        "10001",
        [("c2-chk", "checking", 53075), ("c2-cc", "credit", -12050)],
        [("1234", "debit", "active"), ("9090", "credit", "inactive")],
    ),
]


class DemoBank:
    """``Services`` on SQLite; safe to call from the pipeline's worker threads."""

    def __init__(self, path: str | Path = ":memory:", *, today: date | None = None) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.Lock()
        self._today = today or date.today()
        with self._lock:
            self._db.executescript(_SCHEMA)
            if not self._db.execute("SELECT 1 FROM customers LIMIT 1").fetchone():
                self._seed()

    def _seed(self) -> None:
        t = self._today
        with self._db:
            for cid, name, phone, zip_code, accounts, cards in DEMO_CUSTOMERS:
                self._db.execute(
                    "INSERT INTO customers VALUES (?, ?, ?, ?)", (cid, name, phone, zip_code)
                )
                self._db.executemany(
                    "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                    [(aid, cid, kind, cents) for aid, kind, cents in accounts],
                )
                self._db.executemany(
                    "INSERT INTO cards VALUES (?, ?, ?, ?)",
                    [(four, cid, kind, status) for four, kind, status in cards],
                )
                self._db.executemany(
                    "INSERT INTO transactions (account_id, day, merchant, amount_cents) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (f"{cid}-chk", (t - timedelta(days=5)).isoformat(), "Payroll", 310000),
                        (f"{cid}-chk", (t - timedelta(days=2)).isoformat(), "City Coffee", -1250),
                        (f"{cid}-chk", (t - timedelta(days=1)).isoformat(), "Green Grocer", -4200),
                    ],
                )
                self._db.execute(
                    "INSERT INTO statements VALUES (?, ?, ?, ?)",
                    (cid, (t + timedelta(days=12)).isoformat(), -min(a[2] for a in accounts), 3500),
                )

    def open_case(self, customer_id: str, caller_id: str | None, kind: str, details: str) -> str:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO cases (customer_id, caller_id, kind, details, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (customer_id or None, caller_id, kind, details, self._today.isoformat()),
            )
        return f"{100000 + int(cursor.lastrowid or 0)}"  # six digits, read out one by one

    def transfer_to_savings(self, customer_id: str, amount: Decimal) -> tuple[Account, Account]:
        self._move(customer_id, "chk", "sav", amount, "Transfer to savings")
        accounts = {a.kind: a for a in self.accounts(customer_id)}
        return accounts["checking"], accounts["savings"]

    def _rows(self, sql: str, *args: object) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def find_customer(self, phone: str) -> Customer | None:
        digits = "".join(c for c in phone if c.isdigit())
        for cid, name, stored in self._rows("SELECT id, name, phone FROM customers"):
            if digits and "".join(c for c in stored if c.isdigit()).endswith(digits[-10:]):
                return Customer(cid, name, stored)
        return None

    def verify(self, customer_id: str, answer: str) -> bool:
        rows = self._rows("SELECT zip_code FROM customers WHERE id = ?", customer_id)
        return bool(rows) and parse_digits(answer) == rows[0][0]

    def accounts(self, customer_id: str) -> list[Account]:
        rows = self._rows(
            "SELECT id, kind, balance_cents FROM accounts WHERE customer_id = ? ORDER BY id",
            customer_id,
        )
        return [Account(aid, kind, Decimal(cents) / 100) for aid, kind, cents in rows]

    def transactions(self, customer_id: str, limit: int = 3) -> list[Transaction]:
        rows = self._rows(
            "SELECT t.day, t.merchant, t.amount_cents FROM transactions t "
            "JOIN accounts a ON a.id = t.account_id WHERE a.customer_id = ? "
            "ORDER BY t.day DESC, t.id DESC LIMIT ?",
            customer_id,
            limit,
        )
        return [Transaction(date.fromisoformat(d), m, Decimal(c) / 100) for d, m, c in rows]

    def cards(self, customer_id: str) -> list[Card]:
        rows = self._rows(
            "SELECT last_four, kind, status FROM cards WHERE customer_id = ? ORDER BY last_four",
            customer_id,
        )
        return [Card(*row) for row in rows]

    def set_card_status(self, customer_id: str, last_four: str, status: str) -> Card:
        with self._lock:
            updated = self._db.execute(
                "UPDATE cards SET status = ? WHERE customer_id = ? AND last_four = ?",
                (status, customer_id, last_four),
            ).rowcount
        if not updated:
            raise ServiceError(f"I can't find a card ending in {' '.join(last_four)} on your file.")
        return next(c for c in self.cards(customer_id) if c.last_four == last_four)

    def pay_credit_card(self, customer_id: str, amount: Decimal) -> Account:
        self._move(customer_id, "chk", "cc", amount, "Credit card payment")
        return next(a for a in self.accounts(customer_id) if a.kind == "credit")

    def _move(self, customer_id: str, source: str, target: str, amount: Decimal, what: str) -> None:
        """Move money between two of the customer's accounts in one transaction."""
        cents = int(amount * 100)
        if cents <= 0:
            raise ServiceError("The amount has to be more than zero.")
        with self._lock, self._db:
            found = self._db.execute(
                "SELECT id, balance_cents FROM accounts WHERE id IN (?, ?)",
                (f"{customer_id}-{source}", f"{customer_id}-{target}"),
            ).fetchall()
            balances = dict(found)
            if len(balances) < 2:
                raise ServiceError("I can't find both of those accounts on your file.")
            if balances[f"{customer_id}-{source}"] < cents:
                raise ServiceError("There isn't enough money in your checking account for that.")
            self._db.execute(
                "UPDATE accounts SET balance_cents = balance_cents - ? WHERE id = ?",
                (cents, f"{customer_id}-{source}"),
            )
            self._db.execute(
                "UPDATE accounts SET balance_cents = balance_cents + ? WHERE id = ?",
                (cents, f"{customer_id}-{target}"),
            )
            self._db.execute(
                "INSERT INTO transactions (account_id, day, merchant, amount_cents) "
                "VALUES (?, ?, ?, ?)",
                (f"{customer_id}-{source}", self._today.isoformat(), what, -cents),
            )

    def payment_due(self, customer_id: str) -> PaymentDue:
        rows = self._rows(
            "SELECT due, balance_cents, minimum_cents FROM statements WHERE customer_id = ?",
            customer_id,
        )
        if not rows:
            raise ServiceError("You don't have a statement due.")
        due, balance, minimum = rows[0]
        return PaymentDue(date.fromisoformat(due), Decimal(balance) / 100, Decimal(minimum) / 100)
