"""The customer domain (pure): fold, decisions, and every move it refuses."""

from __future__ import annotations

import pytest
from payments_billing import customer as domain
from payments_billing.events import DomainEvent
from payments_shared.errors import ApiError

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-02T00:00:00.000000Z"


def new(**overrides: object) -> domain.NewCustomer:
    fields: dict[str, object] = {
        "id": "cus_1",
        "workspace": "ws_a",
        "email": "a@example.com",
        "provider": "sandbox",
        "name": "Ada",
        "metadata": {"plan": "gold", "tier": "1"},
        "provider_reference": "cus_sbx_1",
        "default_payment_method": "pm_card_visa",
    }
    fields.update(overrides)
    return domain.NewCustomer(**fields)  # type: ignore[arg-type]


def created() -> list[DomainEvent]:
    return [domain.decide_create(None, new(), T0)]


def test_create_folds_into_the_customer_as_the_api_shows_it() -> None:
    customer = domain.fold(created())
    assert customer is not None
    assert customer.to_api() == {
        "id": "cus_1",
        "object": "customer",
        "email": "a@example.com",
        "name": "Ada",
        "phone": None,
        "description": None,
        "metadata": {"plan": "gold", "tier": "1"},
        "provider": "sandbox",
        "provider_reference": "cus_sbx_1",
        "default_payment_method": "pm_card_visa",
        "created_at": T0,
        "updated_at": T0,
    }


def test_creating_an_existing_customer_is_a_conflict() -> None:
    with pytest.raises(ApiError) as raised:
        domain.decide_create(domain.fold(created()), new(), T1)
    assert raised.value.status == 409


def test_update_merges_fields_and_metadata() -> None:
    events = created()
    changes = domain.CustomerChanges(
        fields={"name": "Ada L.", "phone": "+441234"},
        metadata={"tier": "2", "plan": "", "new": "x"},
        default_payment_method="pm_card_mastercard",
    )
    events.append(domain.decide_update(domain.fold(events), "ws_a", changes, T1))
    customer = domain.fold(events)
    assert customer is not None
    assert (customer.name, customer.phone, customer.email) == ("Ada L.", "+441234", "a@example.com")
    assert customer.metadata == {"tier": "2", "new": "x"}
    assert customer.default_payment_method == "pm_card_mastercard"
    assert customer.updated_at == T1 and customer.created_at == T0


def test_every_default_payment_method_recorded_is_remembered() -> None:
    """What an update's re-drive tells the provider this system recorded (the ones it made, never shown)."""
    events = [domain.decide_create(None, new(default_payment_method=None), T0)]
    assert domain.fold(events).payment_methods == frozenset()  # type: ignore[union-attr]
    for method in ("prof/1", "prof/2"):
        changes = domain.CustomerChanges(default_payment_method=method)
        events.append(domain.decide_update(domain.fold(events), "ws_a", changes, T1))
    events.append(domain.decide_update(domain.fold(events), "ws_a", domain.CustomerChanges({"name": "Ada L."}), T1))
    customer = domain.fold(events)
    assert customer is not None
    assert customer.payment_methods == {"prof/1", "prof/2"} and customer.default_payment_method == "prof/2"
    assert "payment_methods" not in customer.to_api()


def test_update_may_clear_an_optional_field() -> None:
    events = created()
    events.append(domain.decide_update(domain.fold(events), "ws_a", domain.CustomerChanges({"name": None}), T1))
    customer = domain.fold(events)
    assert customer is not None and customer.name is None


def test_update_may_repeat_the_provider_but_not_change_it() -> None:
    customer = domain.fold(created())
    domain.decide_update(customer, "ws_a", domain.CustomerChanges(provider="sandbox"), T1)
    with pytest.raises(ApiError) as raised:
        domain.decide_update(customer, "ws_a", domain.CustomerChanges(provider="stripe"), T1)
    assert (raised.value.status, raised.value.param) == (400, "provider")


def test_delete_then_every_decision_is_not_found() -> None:
    events = created()
    events.append(domain.decide_delete(domain.fold(events), "ws_a", T1))
    customer = domain.fold(events)
    assert customer is not None and customer.deleted
    for decide in (
        lambda: domain.visible(customer, "ws_a"),
        lambda: domain.decide_update(customer, "ws_a", domain.CustomerChanges({"name": "x"}), T1),
        lambda: domain.decide_delete(customer, "ws_a", T1),
    ):
        with pytest.raises(ApiError) as raised:
            decide()
        assert raised.value.status == 404


def test_another_workspace_sees_nothing() -> None:
    customer = domain.fold(created())
    for decide in (
        lambda: domain.visible(customer, "ws_b"),
        lambda: domain.decide_update(customer, "ws_b", domain.CustomerChanges({"name": "x"}), T1),
        lambda: domain.decide_delete(customer, "ws_b", T1),
    ):
        with pytest.raises(ApiError) as raised:
            decide()
        assert raised.value.status == 404


def test_unknown_customer_is_not_found() -> None:
    with pytest.raises(ApiError) as raised:
        domain.decide_delete(None, "ws_a", T1)
    assert raised.value.status == 404


def test_events_before_creation_and_unknown_types_change_nothing() -> None:
    assert domain.fold([DomainEvent(domain.UPDATED, {"changes": {}, "updated_at": T1})]) is None
    events = [*created(), DomainEvent("SomethingNew", {})]
    assert domain.fold(events) == domain.fold(created())


def test_deleted_reply_shape() -> None:
    assert domain.deleted_reply("cus_1") == {"id": "cus_1", "object": "customer", "deleted": True}


def test_a_reported_deletion_is_recorded_once() -> None:
    events = created()
    event = domain.decide_reported_deletion(domain.fold(events), "ws_a", T1)
    assert event is not None and event.type == domain.DELETED
    events.append(event)
    assert domain.decide_reported_deletion(domain.fold(events), "ws_a", T1) is None
    assert domain.decide_reported_deletion(None, "ws_a", T1) is None
    assert domain.decide_reported_deletion(domain.fold(created()), "ws_b", T1) is None
