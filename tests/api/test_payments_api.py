"""Payments through the public API: declines, idempotency keys, ownership."""

from __future__ import annotations

import time

from tests.support import eventually

CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


def _pay(client, headers, key="order-1", **body):
    return client.post(
        "/api/payment",
        json=CARD | body,
        headers=headers | ({"Idempotency-Key": key} if key else {}),
    )


def test_successful_payment_and_receipt(client, auth):
    headers = auth.signup()
    response = _pay(client, headers)
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()
    assert payment["status"] == "succeeded"
    assert (payment["amount"], payment["currency"]) == (1999, "usd")
    fetched = client.get(f"/api/payments/{payment['id']}", headers=headers)
    assert fetched.get_json() == payment

    def receipt_sent() -> None:
        inbox = client.get("/api/dev/inbox").get_json()["items"]
        assert any("19.99" in m["body"] for m in inbox)

    eventually(receipt_sent)


def test_declined_card_is_a_402(client, auth):
    response = _pay(client, auth.signup(), payment_method="pm_card_chargeDeclined")
    assert response.status_code == 402
    error = response.get_json()["error"]
    assert error["code"] == "payment_declined"


def test_replayed_idempotency_key_charges_once(client, auth):
    headers = auth.signup()
    first = _pay(client, headers, key="same-key").get_json()
    second = _pay(client, headers, key="same-key").get_json()
    assert first == second

    def receipts() -> list[dict]:
        found = [
            m for m in client.get("/api/dev/inbox").get_json()["items"] if "19.99" in m["body"]
        ]
        assert found
        return found

    eventually(receipts)
    time.sleep(0.3)  # give a (wrong) second receipt the time to arrive before counting
    assert len(receipts()) == 1


def test_same_key_with_another_amount_is_a_conflict(client, auth):
    headers = auth.signup()
    _pay(client, headers, key="k")
    response = _pay(client, headers, key="k", amount=5000)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_key_is_required(client, auth):
    response = _pay(client, auth.signup(), key=None)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["error"]["message"]


def test_bad_amounts_are_400(client, auth):
    headers = auth.signup()
    for i, amount in enumerate([0, -5, "10", True, 1.5]):
        response = _pay(client, headers, key=f"bad-{i}", amount=amount)
        assert response.status_code == 400, amount


def test_someone_elses_payment_is_not_found(client, auth):
    owner = auth.signup()
    payment = _pay(client, owner).get_json()
    other = auth.signup(email="eve@example.com", name="Eve")
    assert client.get(f"/api/payments/{payment['id']}", headers=other).status_code == 404
