"""Ports picked for children: a port picked now is bound by a child later, so nothing else may
take it in between. The CI run that failed: another test worker's hub got a picked port
("Address already in use"), and a port meant to stay closed answered with another hub's 404."""

from __future__ import annotations

import socket

import pytest

from egi_notebooks.demo.app import DEMO_INTERNAL_PORTS
from egi_notebooks.demo.processes import PortPicker, ephemeral_port_range, parse_port_range
from tests.harness import ports


def test_harness_ports_are_below_the_kernels_ephemeral_range():
    # port-0 binds (kernels' ZeroMQ sockets, single-user servers) and outgoing connections get
    # ports from the ephemeral range at any moment; a port picked from it can be gone by the
    # time the child binds it
    low, _ = ephemeral_port_range()
    picked = [ports.free_port() for _ in range(50)]
    assert all(port < low for port in picked), picked


def test_a_picker_never_hands_out_a_port_twice_in_a_cycle():
    picker = PortPicker(20000, 20100)
    picked = [picker() for _ in range(60)]  # none of them bound: each is still free
    assert len(set(picked)) == len(picked)


def _listening_below_a_free_port() -> socket.socket:
    """A listening socket on a port of this worker's range whose next port is free: below the
    ephemeral range, where no outgoing connection takes the next port meanwhile (one did, in
    a CI run, with a port-0 bind)."""
    for _ in range(50):
        port = ports.free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", port))
        except OSError:
            taken.close()
            continue
        taken.listen()
        return taken
    raise RuntimeError("no two free ports in a row in this worker's range")


def test_a_picker_skips_a_port_in_use_and_wraps_around():
    with _listening_below_a_free_port() as taken:
        port = taken.getsockname()[1]
        picker = PortPicker(port, port + 2, start=port)
        assert picker() == port + 1  # the listening one is skipped
        assert picker() == port + 1  # wrapped around, skipping it again


def test_a_picker_with_no_free_port_says_which_range():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"no free port in {port}-{port}"):
            PortPicker(port, port + 1)()


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_test_workers_get_disjoint_ranges_apart_from_the_demos(count):
    ranges = [ports.worker_range(f"gw{index}", count) for index in range(count)]
    ephemeral_low, _ = ephemeral_port_range()
    demo_low, demo_high = parse_port_range(DEMO_INTERNAL_PORTS)
    taken: set[int] = set(range(demo_low, demo_high + 1))
    for low, high in ranges:
        assert high <= ephemeral_low
        own = set(range(low, high))
        assert len(own) >= 500 and not own & taken
        taken |= own


def test_a_demo_block_is_inside_the_workers_range_and_not_handed_out_again():
    low, high = ports.worker_range(None, 1)
    first, second = ports.demo_port_block(), ports.demo_port_block()
    for block in (first, second):
        block_low, block_high = parse_port_range(block)
        assert low <= block_low <= block_high < high
    assert first != second
    everyday = {ports.free_port() for _ in range(200)}
    for block in (first, second):
        block_low, block_high = parse_port_range(block)
        assert not everyday & set(range(block_low, block_high + 1))


@pytest.mark.parametrize(
    "text, error",
    [
        ("10000", "LOW-HIGH"),
        ("a-b", "LOW-HIGH"),
        ("2000-1000", "LOW must not be above HIGH"),
        ("0-10", "between 1 and 65535"),
        ("60000-70000", "between 1 and 65535"),
    ],
)
def test_a_bad_port_range_is_refused_clearly(text, error):
    with pytest.raises(ValueError, match=error):
        parse_port_range(text)
