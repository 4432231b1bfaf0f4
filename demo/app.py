"""The demo app: a small shop API with realistic behaviour, every request measured.

* ``GET /api/items``, ``GET /api/items/<id>``: fast (milliseconds); an unknown id is a 404;
* ``GET /api/search?q=``: tens of milliseconds; no ``q`` is a 400;
* ``POST /api/orders``: a JSON body ``{"item_id": int, "quantity": int > 0}`` (else 400),
  tens to a hundred milliseconds, and at ``error_rate`` a payment timeout (500) or an
  out-of-stock (503);
* ``GET /api/report``: the slow one, 0.3 to several seconds, now and then a timeout (500).

``Behaviour`` holds the knobs: the share of server failures, a factor on every delay
(0: none) and the seed of the random choices. The instruments are
``demo.telemetry.Instruments``; this module only records into them.
"""

from __future__ import annotations

import dataclasses
import random
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from demo.telemetry import Instruments


@dataclasses.dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.05  # share of orders (and a fifth of it of reports) failing 5xx
    latency_scale: float = 1.0  # factor on every simulated delay; 0 answers at once
    seed: int | None = None


class Failure(Exception):
    """A server-side failure the app answers with ``status``; its class name is the
    request's ``error.type``."""

    status = 500


class PaymentTimeout(Failure):
    status = 500


class OutOfStock(Failure):
    status = 503


class ReportTimeout(Failure):
    status = 500


ITEMS = 1000


def create_app(instruments: Instruments, behaviour: Behaviour | None = None) -> Flask:
    behaviour = behaviour or Behaviour()
    rng = random.Random(behaviour.seed)
    app = Flask("demo")

    def work(median_s: float, spread: float = 0.5) -> None:
        """Spend about ``median_s`` seconds (log-normal, so a long tail), scaled."""
        if behaviour.latency_scale > 0:
            time.sleep(behaviour.latency_scale * median_s * rng.lognormvariate(0, spread))

    # -- measuring every request -------------------------------------------------------

    def base_attributes() -> dict[str, str]:
        attrs = {"http.request.method": request.method}
        if request.url_rule is not None:
            attrs["http.route"] = request.url_rule.rule
        return attrs

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()
        g.attrs = base_attributes()
        instruments.active.add(1, g.attrs)

    @app.after_request
    def answered(response):
        attrs = dict(getattr(g, "attrs", None) or base_attributes())
        attrs["http.response.status_code"] = response.status_code
        error_type = g.get("error_type")
        if error_type is None and response.status_code >= 500:
            error_type = str(response.status_code)
        if error_type is not None:
            attrs["error.type"] = error_type
            instruments.errors.add(1, {k: v for k, v in attrs.items() if k != "http.response.status_code"})
        instruments.requests.add(1, {k: v for k, v in attrs.items() if k != "error.type"})
        instruments.duration.record(time.perf_counter() - g.get("started", time.perf_counter()), attrs)
        return response

    @app.teardown_request
    def finished(exc) -> None:
        if "attrs" in g:
            instruments.active.add(-1, g.attrs)

    @app.errorhandler(Failure)
    def failure(exc: Failure):
        g.error_type = type(exc).__name__
        return jsonify(error=str(exc), type=type(exc).__name__), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description), exc.code

    # -- the shop ---------------------------------------------------------------------

    @app.get("/")
    def index():
        return jsonify(service="pgpulse-demo", endpoints=[
            "GET /api/items", "GET /api/items/<id>", "GET /api/search?q=", "POST /api/orders",
            "GET /api/report"])

    @app.get("/api/items")
    def items():
        work(0.012)
        page = rng.randint(0, ITEMS // 20 - 1)
        return jsonify(items=[{"id": i, "name": f"item {i}"} for i in range(page * 20 + 1, page * 20 + 21)])

    @app.get("/api/items/<int:item_id>")
    def item(item_id: int):
        work(0.006)
        if not 1 <= item_id <= ITEMS:
            return jsonify(error=f"no item {item_id}"), 404
        return jsonify(id=item_id, name=f"item {item_id}", price=round(1 + item_id % 97 * 0.5, 2))

    @app.get("/api/search")
    def search():
        q = request.args.get("q", "").strip()
        if not q:
            return jsonify(error="query parameter q is required"), 400
        work(0.04, 0.6)
        return jsonify(q=q, hits=rng.randint(0, 50))

    @app.post("/api/orders")
    def order():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or type(body.get("item_id")) is not int \
                or type(body.get("quantity")) is not int or body["quantity"] < 1:
            return jsonify(error='expected {"item_id": int, "quantity": int > 0}'), 400
        work(0.06, 0.6)
        roll = rng.random()
        if roll < behaviour.error_rate * 0.7:
            work(0.5, 0.3)  # the payment provider hangs before it gives up
            raise PaymentTimeout("the payment provider did not answer in time")
        if roll < behaviour.error_rate:
            raise OutOfStock(f"item {body['item_id']} is out of stock")
        return jsonify(order=rng.randint(10_000, 99_999), item_id=body["item_id"]), 201

    @app.get("/api/report")
    def report():
        work(0.8, 0.7)
        if rng.random() < behaviour.error_rate / 5:
            raise ReportTimeout("the report query was cancelled")
        return jsonify(rows=rng.randint(100, 10_000))

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    return app
