"""The payments domain's tables, on its own ``MetaData``.

``user_id`` is a plain integer, never a foreign key into auth's table: the payments domain must be
extractable to its own database. The unique ``(user_id, idempotency_key)`` constraint is what makes
"never charge twice for one key" hold even under concurrent requests.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blog.db import UtcDateTime, new_metadata, utcnow
from blog.events import outbox_table


class PaymentsBase(DeclarativeBase):
    metadata = new_metadata()  # this domain's own: no table belongs to two domains


metadata = PaymentsBase.metadata

ExactString = String(255).with_variant(
    mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
)
"""Compared byte for byte everywhere. MariaDB's default collation is case- (and accent-)
insensitive: there ``order-1`` and ``ORDER-1`` would be one idempotency key, and the second order
would replay the first one's payment instead of being charged. (A payments table made on MariaDB
before this needs ``ALTER TABLE payments MODIFY idempotency_key VARCHAR(255) COLLATE
utf8mb4_bin NOT NULL``.)"""

outbox = outbox_table(metadata, "payments")
"""Events this domain publishes, written in the same transaction as the change."""


class PaymentRow(PaymentsBase):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_payments_user_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(ExactString)
    status: Mapped[str] = mapped_column(String(16), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
