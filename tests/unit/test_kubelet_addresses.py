"""The emulated kubelet gives each pod a loopback address of its own, as a cluster gives each
pod its own IP. Several emulators run at once (parallel test files, other suites on the
machine): a pod must never be given an address where another process already listens on its
port, or the hub would route the user to somebody else's server."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from tests.harness.k8s.kubelet import Kubelet

PORT = 8888


def kubelet() -> Kubelet:
    return Kubelet(SimpleNamespace(listeners=[]), run_processes=True)


def test_an_address_whose_port_is_taken_is_never_given_out():
    first = kubelet()
    taken = first._next_ip  # what the next pod would get
    with socket.socket() as other_server:
        other_server.bind((str(taken), PORT))
        other_server.listen()
        assert first._allocate_ip(PORT) != str(taken)


def test_two_emulators_do_not_start_at_the_same_address():
    # the same first address for every emulator made parallel runs collide on every spawn
    starts = {str(kubelet()._next_ip) for _ in range(5)}
    assert len(starts) > 1
