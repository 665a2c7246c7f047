"""The payments interface served over HTTP (mounted by ``extracted/payments``); ``client.py`` is
the other end of the same wire format. Inputs pass through untouched so the service's own
validation produces exactly the errors the in-process call would; a declined card leaves as a 402
whose ``details`` (the payment and its decline code) the shared error handler serialises intact.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, current_app, jsonify, request

from blog.payments import PaymentsInvalidInput, PaymentsService
from blog.transport import read_json

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


def make_blueprint(service: PaymentsService) -> Blueprint:
    bp = Blueprint("payments_service", __name__)

    def body() -> dict:
        return read_json(current_app.config["BLOG"].max_json_bytes)

    @bp.post("/payment")
    def charge() -> tuple[Response, int]:
        data = body()
        payment = service.charge(
            data.get("user_id"),
            data.get("amount"),
            data.get("currency"),
            data.get("payment_method"),
            # No header reaches the service as None: its own validation answers, as in-process.
            request.headers.get(IDEMPOTENCY_KEY_HEADER),  # type: ignore[arg-type]
        )
        return jsonify(asdict(payment)), 201

    # signed: a negative id must reach the service (PaymentNotFound), not Flask's generic 404.
    @bp.get("/payments/<int(signed=True):payment_id>")
    def get_payment(payment_id: int) -> Response:
        return jsonify(asdict(service.get_payment(payment_id)))

    @bp.post("/reconcile")
    def reconcile() -> Response:
        older = body().get("older_than_seconds", 60)
        # The service trusts its (operator) caller here; over the wire a bad value must be a 400,
        # not a 500 that the client would retry and then report as "unavailable".
        if isinstance(older, bool) or not isinstance(older, int | float):
            raise PaymentsInvalidInput("older_than_seconds: must be a number of seconds")
        return jsonify({"settled": service.reconcile_pending(older_than_seconds=older)})

    return bp
