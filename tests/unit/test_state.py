"""DeviceState snapshots and the hub that publishes them."""

from __future__ import annotations

from device.state import ChainStatus, DeviceState, LinkStatus, StateHub


def test_subscriber_gets_the_current_state_at_once() -> None:
    hub = StateHub(DeviceState(model="m"))
    seen: list[DeviceState] = []
    hub.subscribe(seen.append)
    assert [s.model for s in seen] == ["m"]


def test_update_notifies_with_a_new_snapshot() -> None:
    hub = StateHub()
    seen: list[DeviceState] = []
    hub.subscribe(seen.append)
    hub.update(relay=LinkStatus.READY)
    assert seen[-1].relay is LinkStatus.READY
    assert seen[0].relay is LinkStatus.CONNECTING


def test_update_without_a_change_does_not_notify() -> None:
    hub = StateHub()
    seen: list[DeviceState] = []
    hub.subscribe(seen.append)
    hub.update(relay=LinkStatus.CONNECTING)
    assert len(seen) == 1


def test_unsubscribed_callback_is_not_called() -> None:
    hub = StateHub()
    seen: list[DeviceState] = []
    unsubscribe = hub.subscribe(seen.append)
    unsubscribe()
    hub.update(chain=ChainStatus.REACHABLE)
    assert len(seen) == 1


def test_balance_fraction_is_clamped_to_the_last_grant() -> None:
    assert DeviceState(user_balance=250, user_last_grant=1000).balance_fraction == 0.25
    assert DeviceState(user_balance=2000, user_last_grant=1000).balance_fraction == 1.0
    assert DeviceState(user_balance=None, user_last_grant=1000).balance_fraction is None


def test_reachable_needs_a_ready_relay_and_a_chain_not_known_down() -> None:
    assert DeviceState(relay=LinkStatus.READY).reachable
    assert not DeviceState(relay=LinkStatus.BACKING_OFF).reachable
    assert not DeviceState(relay=LinkStatus.READY, chain=ChainStatus.UNREACHABLE).reachable
