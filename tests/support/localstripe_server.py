"""localstripe (a Stripe emulator) for the tests: a subprocess on a free port, its state flushed per test.

Run as a script (`python tests/support/localstripe_server.py --port N`) it is localstripe with two adjustments:
- no state file: localstripe pickles its whole store to /tmp/localstripe.pickle after every write, a path shared
  by every run on the machine (and by other users); we keep the state in memory only.
- it accepts `allowed_payment_method_types`, the name Stripe API version 2026-09-30 and later (the version our
  SDK pins) gives to what localstripe still calls `payment_method_types`.
- a subscription takes its own `default_payment_method`, and its invoices are paid with it before the
  customer's `invoice_settings.default_payment_method`, as Stripe documents for that parameter.
- an update's metadata key sent as "" is removed, as Stripe documents (https://docs.stripe.com/api/metadata);
  localstripe kept it with the value "".
Nothing else is taught to it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 20.0
THREE_D_SECURE_CARD = "4000002500003155"
# POST /v1/payment_methods form for a card whose payments need 3-D Secure
THREE_D_SECURE_METHOD = {
    "type": "card",
    "card[number]": THREE_D_SECURE_CARD,
    "card[exp_month]": "12",
    "card[exp_year]": "2034",
    "card[cvc]": "123",
}


def three_d_secure_method(stripe: httpx.Client) -> str:
    """A PaymentMethod id at localstripe (`stripe` authenticated to it) whose payments need 3-D Secure."""
    created = stripe.post("/v1/payment_methods", data=THREE_D_SECURE_METHOD)
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def authenticate(stripe: httpx.Client, intent_id: str) -> dict[str, Any]:
    """The customer completes 3-D Secure for the PaymentIntent: the intent as it is afterwards."""
    secret = stripe.get(f"/v1/payment_intents/{intent_id}").json()["client_secret"]
    done = stripe.post(
        f"/v1/payment_intents/{intent_id}/_authenticate", data={"client_secret": secret, "success": "true"}
    )
    assert done.status_code == 200, done.text
    intent: dict[str, Any] = done.json()
    return intent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_localstripe(log_path: Path) -> Iterator[str]:
    """Start localstripe, wait until it answers, yield its base URL; stop it afterwards."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "--port", str(port), "--from-scratch"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"localstripe did not start: see {log_path}")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def flush(base_url: str) -> None:
    """Forget every object (localstripe's own reset endpoint)."""
    httpx.delete(f"{base_url}/_config/data", timeout=5).raise_for_status()


def _adjust_localstripe() -> None:
    import localstripe.resources as resources

    def keep_in_memory(self: Any) -> None:
        return None

    resources.Store.dump_to_disk = keep_in_memory
    create_intent = resources.PaymentIntent._api_create.__func__

    def create_with_allowed_types(cls: Any, /, allowed_payment_method_types: Any = None, **data: Any) -> Any:
        if allowed_payment_method_types is not None:
            data["payment_method_types"] = allowed_payment_method_types
        return create_intent(cls, **data)

    resources.PaymentIntent._api_create = classmethod(create_with_allowed_types)
    _teach_subscription_default_payment_method(resources)
    _teach_metadata_unset(resources)


def _teach_metadata_unset(resources: Any) -> None:
    update = resources.StripeObject._update

    def update_unsetting_emptied_keys(self: Any, **data: Any) -> None:
        update(self, **data)
        if getattr(self, "metadata", None):
            self.metadata = {key: value for key, value in self.metadata.items() if value != ""}

    resources.StripeObject._update = update_unsetting_emptied_keys


def _teach_subscription_default_payment_method(resources: Any) -> None:
    create_subscription = resources.Subscription.__init__
    pay_invoice = resources.Invoice._api_pay_invoice.__func__

    def create_with_default_method(self: Any, default_payment_method: Any = None, **data: Any) -> None:
        self.default_payment_method = default_payment_method  # set first: the first invoice is paid in __init__
        create_subscription(self, **data)

    def pay_with_the_subscriptions_method(cls: Any, id: str) -> Any:
        invoice = resources.Invoice._api_retrieve(id)
        subscription = resources.Subscription._api_retrieve(invoice.subscription) if invoice.subscription else None
        method = getattr(subscription, "default_payment_method", None)
        if not method:
            return pay_invoice(cls, id)
        customer = resources.Customer._api_retrieve(invoice.customer)
        kept = customer.invoice_settings
        customer.invoice_settings = {**kept, "default_payment_method": method}
        try:
            return pay_invoice(cls, id)
        finally:
            customer.invoice_settings = kept

    resources.Subscription.__init__ = create_with_default_method
    resources.Invoice._api_pay_invoice = classmethod(pay_with_the_subscriptions_method)


if __name__ == "__main__":
    _adjust_localstripe()
    from localstripe.server import start

    start()
