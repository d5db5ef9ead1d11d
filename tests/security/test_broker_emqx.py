"""`xiaodian broker config --flavour emqx`: the EMQX files parse, and their ACL gives the
same answer as the real Mosquitto (TLS, its generated ACL and subscribe rules) and as the
rule model (devstack.broker_rules) for every case of one table.

EMQX is not installed here: acl.conf is judged by devstack.testkit.emqx_authz, an
evaluator of EMQX's documented first-match semantics; Mosquitto is judged by delivery.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from devstack.broker import Broker
from devstack.broker_emqx import EMQX_ACL_NAME, acl_conf, write_emqx_config
from devstack.broker_rules import allows, real_topic, topic_matches
from devstack.testkit.emqx_authz import (
    Client,
    authorize,
    compile_rules,
    connecting_client,
)
from devstack.testkit.emqx_files import (
    Atom,
    hocon_get,
    parse_erlang_terms,
    parse_hocon,
)
from xiaodian.mqtt import MqttSettings, TlsSettings, new_client
from xiaodian.pki import DevPki

STORE = "store-001"
SERVICE = "cloud-gateway"


@dataclass(frozen=True)
class Case:
    cn: str  # whose certificate
    claimed: str  # the client id it sends
    action: str  # publish | subscribe
    topic: str  # topic (publish) or filter (subscribe)
    expected: bool
    probe_by: str = ""  # subscribe: who publishes the probe ("cloud", "store-002", "self")
    probe: str = ""  # subscribe: the topic of the probe, matching the filter

    def __str__(self) -> str:
        return f"{self.cn} (as {self.claimed}) {self.action} {self.topic}"


def pub(cn: str, claimed: str, topic: str, expected: bool) -> Case:
    return Case(cn, claimed, "publish", topic, expected)


def sub(cn: str, claimed: str, topic: str, probe_by: str, probe: str, expected: bool) -> Case:
    return Case(cn, claimed, "subscribe", topic, expected, probe_by, probe)


S1, S2, CLOUD = "store-001", "store-002", "cloud-gateway"
CASES = [
    # A store publishes into its own subtree, and only its uplink leaves.
    pub(S1, S1, "xd/v1/store-001/telemetry", True),
    pub(S1, S1, "xd/v1/store-001/bundle", True),
    pub(S1, S1, "xd/v1/store-001/cmd/res", True),
    pub(S1, S1, "xd/v1/store-001/state", True),
    pub(S2, S2, "xd/v1/store-002/alerts", True),
    pub(S1, S1, "xd/v1/store-002/telemetry", False),
    pub(S1, S1, "xd/v1/store-001/orders", False),
    pub(S1, S1, "xd/v1/store-001/receipts", False),
    pub(S1, S1, "xd/v1/store-001/telemetry/x", False),
    pub(S1, S1, "xd/v1/store-001", False),
    # The client id it claims changes nothing: the certificate's CN decides.
    pub(S1, S2, "xd/v1/store-002/telemetry", False),
    pub(S1, S2, "xd/v1/store-001/events", True),
    pub(S1, CLOUD, "xd/v1/store-002/orders", False),
    # A service sends downlink to any store, never uplink in a store's name.
    pub(CLOUD, CLOUD, "xd/v1/store-001/orders", True),
    pub(CLOUD, CLOUD, "xd/v1/store-002/cmd/req", True),
    pub(CLOUD, "ingest-7", "xd/v1/store-001/receipts", True),
    pub(CLOUD, CLOUD, "xd/v1/store-001/catalogue", True),
    pub(CLOUD, CLOUD, "xd/v1/store-001/telemetry", False),
    pub(CLOUD, S1, "xd/v1/store-001/telemetry", False),
    pub(CLOUD, CLOUD, "xd/v1/store-001/orders/x", False),
    # Own-subtree rules apply to every certificate: a service has a "store" subtree of its
    # own name, which no store can have (a name keeps one kind for the CA's life).
    pub(CLOUD, CLOUD, "xd/v1/cloud-gateway/telemetry", True),
    # A store subscribes to its own downlink only.
    sub(S1, S1, "xd/v1/store-001/orders", "cloud", "xd/v1/store-001/orders", True),
    sub(S1, S1, "xd/v1/store-001/cmd/req", "cloud", "xd/v1/store-001/cmd/req", True),
    sub(S1, S2, "xd/v1/store-001/catalogue", "cloud", "xd/v1/store-001/catalogue", True),
    sub(S1, S1, "xd/v1/store-002/orders", "cloud", "xd/v1/store-002/orders", False),
    sub(S1, S2, "xd/v1/store-002/orders", "cloud", "xd/v1/store-002/orders", False),
    sub(S1, S1, "xd/v1/+/orders", "cloud", "xd/v1/store-002/orders", False),
    sub(S1, S1, "xd/v1/store-001/#", "cloud", "xd/v1/store-001/orders", False),
    sub(S1, S1, "#", S2, "xd/v1/store-002/telemetry", False),
    sub(S1, S1, "xd/v1/store-001/telemetry", "self", "xd/v1/store-001/telemetry", False),
    # Shared groups are judged on their real topic: never the cloud's, only its own.
    sub(S1, S1, "$share/ingest/xd/v1/+/telemetry", S2, "xd/v1/store-002/telemetry", False),
    sub(S1, S1, "$share/ingest/xd/v1/store-002/telemetry", S2, "xd/v1/store-002/telemetry",
        False),
    sub(S1, S1, "$share/own/xd/v1/store-001/orders", "cloud", "xd/v1/store-001/orders", True),
    sub(S1, S1, "$share/own/xd/v1/store-002/orders", "cloud", "xd/v1/store-002/orders", False),
    # A service reads everything stores send, in the workers' groups or not.
    sub(CLOUD, CLOUD, "xd/v1/+/telemetry", S2, "xd/v1/store-002/telemetry", True),
    sub(CLOUD, "ingest-9", "$share/ingest/xd/v1/+/telemetry", S2, "xd/v1/store-002/telemetry",
        True),
    sub(CLOUD, CLOUD, "$share/ingest/xd/v1/+/bundle", S2, "xd/v1/store-002/bundle", True),
    sub(CLOUD, CLOUD, "xd/v1/+/state", S2, "xd/v1/store-002/state", True),
    sub(CLOUD, S1, "xd/v1/store-001/orders", "cloud", "xd/v1/store-001/orders", True),
    sub(CLOUD, CLOUD, "#", S2, "xd/v1/store-002/telemetry", False),
    sub(CLOUD, CLOUD, "$share/ingest/#", S2, "xd/v1/store-002/telemetry", False),
    sub(CLOUD, CLOUD, "+/v1/+/telemetry", S2, "xd/v1/store-002/telemetry", False),
    sub(CLOUD, CLOUD, "xd/+/+/telemetry", S2, "xd/v1/store-002/telemetry", False),
]


# --- the files parse ------------------------------------------------------------------------


@pytest.fixture
def emqx_files(pki: DevPki, tmp_path: Path) -> tuple[dict[str, Any], list[Any]]:
    conf_path = write_emqx_config(tmp_path / "emqx", pki, 8883)
    conf = parse_hocon(conf_path.read_text(encoding="utf-8"))
    terms = parse_erlang_terms(conf_path.with_name(EMQX_ACL_NAME).read_text(encoding="utf-8"))
    return conf, terms


def test_emqx_conf_is_tls_only_with_the_cn_as_username_and_client_id(
    pki: DevPki, tmp_path: Path, emqx_files: tuple[dict[str, Any], list[Any]]
) -> None:
    conf, _ = emqx_files
    ssl = "listeners.ssl.default"
    assert hocon_get(conf, f"{ssl}.enable") is True
    assert hocon_get(conf, f"{ssl}.bind") == "127.0.0.1:8883"
    assert hocon_get(conf, f"{ssl}.ssl_options.verify") == "verify_peer"
    assert hocon_get(conf, f"{ssl}.ssl_options.fail_if_no_peer_cert") is True
    assert hocon_get(conf, f"{ssl}.ssl_options.cacertfile") == str(pki.ca)
    assert hocon_get(conf, f"{ssl}.ssl_options.certfile") == str(pki.server_cert)
    assert hocon_get(conf, f"{ssl}.ssl_options.keyfile") == str(pki.server_key)
    # EMQX starts tcp/ws/wss listeners by default: each is switched off, none other is on.
    listeners = hocon_get(conf, "listeners")
    assert isinstance(listeners, dict)
    enabled = {f"{kind}.{name}": opts.get("enable")
               for kind, named in listeners.items() for name, opts in named.items()}
    assert enabled == {"ssl.default": True, "tcp.default": False, "ws.default": False,
                       "wss.default": False}
    assert hocon_get(conf, "mqtt.peer_cert_as_username") == "cn"
    assert hocon_get(conf, "mqtt.peer_cert_as_clientid") == "cn"
    assert hocon_get(conf, "mqtt.shared_subscription") is True
    assert hocon_get(conf, "authentication") == []
    assert hocon_get(conf, "authorization.no_match") == "deny"
    assert hocon_get(conf, "authorization.sources") == [{
        "type": "file", "enable": True,
        "path": str(tmp_path / "emqx" / EMQX_ACL_NAME),
    }]


def test_acl_conf_is_erlang_terms_ending_in_deny_all(
    pki: DevPki, emqx_files: tuple[dict[str, Any], list[Any]]
) -> None:
    _, terms = emqx_files
    rules = compile_rules(terms)
    assert terms[-1] == (Atom("deny"), Atom("all"))
    assert len(rules) == 2 + 2 * len(pki.services) + 1
    assert (Atom("allow"), (Atom("user"), SERVICE), Atom("subscribe"), ["xd/v1/#"]) in terms


@pytest.mark.parametrize("text", [
    "a = ${b}",  # a substitution
    "a = 1\na = 2",  # a key set twice
    "a = x y",  # a concatenation
    "a { b = 1",  # unclosed
    'include "other.conf"',
])
def test_the_hocon_reader_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(SyntaxError):
        parse_hocon(text)


@pytest.mark.parametrize("text", [
    "{allow, all}",  # no final dot
    "{allow, all, publish, [\"a\"}.",  # unbalanced
    "{allow all}.",  # no comma
    "{allow, \"a}.",  # unterminated string
])
def test_the_erlang_reader_refuses_malformed_terms(text: str) -> None:
    with pytest.raises(SyntaxError):
        parse_erlang_terms(text)


def test_the_evaluator_follows_the_client_id_binding_of_emqx_conf() -> None:
    """Rules on ${clientid} would let a claimed id through without peer_cert_as_clientid:
    the evaluator must see that (it reads the binding from emqx.conf)."""
    rules = compile_rules(parse_erlang_terms(
        '{allow, all, publish, ["xd/v1/${clientid}/telemetry"]}.\n{deny, all}.\n'))
    bound = parse_hocon("mqtt.peer_cert_as_clientid = cn\nauthorization.no_match = deny")
    unbound = parse_hocon("authorization.no_match = deny")
    topic = "xd/v1/store-002/telemetry"
    claim = connecting_client(unbound, STORE, "store-002")
    assert claim == Client(None, "store-002")
    assert authorize(rules, unbound, claim, "publish", topic) is True
    bound_claim = connecting_client(bound, STORE, "store-002")
    assert authorize(rules, bound, bound_claim, "publish", topic) is False


def test_first_match_wins_and_eq_is_literal() -> None:
    rules = compile_rules(parse_erlang_terms(
        '{deny, all, subscribe, [{eq, "a/#"}]}.\n'
        '{allow, all, subscribe, ["a/#"]}.\n'
        '%% comment\n{deny, all}.\n'))
    conf = parse_hocon("authorization.no_match = allow")
    client = Client("u", "c")
    assert authorize(rules, conf, client, "subscribe", "a/#") is False  # eq: only "a/#"
    assert authorize(rules, conf, client, "subscribe", "a/+") is True
    assert authorize(rules, conf, client, "subscribe", "$share/g/a/b") is True
    assert authorize(rules, conf, client, "publish", "b") is False  # {deny, all}


# --- the table: the model, Mosquitto and EMQX agree ----------------------------------------


def own_tls(pki: DevPki, name: str, tmp_path: Path) -> TlsSettings:
    """`name`'s certificate alone in a directory, so new_client never swaps in the
    certificate named after a claimed client id (TlsSettings.for_client)."""
    src = pki.client(name)
    own = tmp_path / f"own-{name}"
    if not own.is_dir():
        own.mkdir()
        shutil.copy(src.cert, own / src.cert.name)
        shutil.copy(src.key, own / src.key.name)
    return TlsSettings(ca=src.ca, cert=own / src.cert.name, key=own / src.key.name)


class Peer:
    """A connected paho client keeping every payload it receives."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.payloads: list[str] = []
        self._cond = threading.Condition()
        self._suback: list[Any] | None = None
        self.client = new_client(settings, client_id)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        assert connected.wait(5), f"{client_id}: no CONNACK"

    def subscribe(self, topic: str) -> bool:
        """True if the SUBACK grants it."""
        with self._cond:
            self._suback = None
        self.client.subscribe(topic, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: self._suback is not None, 5), f"no SUBACK: {topic}"
            assert self._suback is not None
            return not self._suback[0].is_failure

    def publish(self, topic: str, payload: str) -> None:
        """Publish at QoS 1 and wait for the PUBACK: the broker has routed it by then
        (Mosquitto acknowledges a refused publish too, and drops it)."""
        self.client.publish(topic, payload.encode(), qos=1).wait_for_publish(5)

    def received(self, until: str) -> list[str]:
        """Everything received, once `until` has arrived (later than anything it follows)."""
        with self._cond:
            assert self._cond.wait_for(lambda: until in self.payloads, 10), (
                f"{until!r} never arrived: {self.payloads}")
            return list(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.payloads.append(msg.payload.decode())
            self._cond.notify_all()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, codes: Any, p: Any) -> None:
        with self._cond:
            self._suback = list(codes)
            self._cond.notify_all()


def control_topic(cn: str, services: list[str], action: str) -> str:
    """A topic `cn` may publish to (publish cases) or receive (subscribe cases), where the
    observer sees it: the barrier after the message under test."""
    if cn in services:
        return "xd/v1/control/orders" if action == "publish" else "xd/v1/control/receipts"
    return f"xd/v1/{cn}/health" if action == "publish" else f"xd/v1/{cn}/receipts"


def mosquitto_verdict(case: Case, n: int, broker: Broker, pki: DevPki, tmp_path: Path,
                      observer: Peer, cloud: Peer) -> bool:
    """What the real broker did, judged by delivery."""
    def settings(name: str) -> MqttSettings:
        return MqttSettings(broker.host, broker.port, own_tls(pki, name, tmp_path))

    marker, ctl = f"case-{n}", f"control-{n}"
    peer = Peer(settings(case.cn), case.claimed)
    try:
        if case.action == "publish":
            peer.publish(case.topic, marker)
            peer.publish(control_topic(case.cn, pki.services, "publish"), ctl)
            return marker in observer.received(until=ctl)
        peer.subscribe(case.topic)  # its SUBACK alone is not the verdict: delivery is
        assert peer.subscribe(control_topic(case.cn, pki.services, "subscribe"))
        if case.probe_by == "self":
            peer.publish(case.probe, marker)
        elif case.probe_by == "cloud":
            cloud.publish(case.probe, marker)
        else:
            prober = Peer(settings(case.probe_by), case.probe_by)
            try:
                prober.publish(case.probe, marker)
            finally:
                prober.close()
        cloud.publish(control_topic(case.cn, pki.services, "subscribe"), ctl)
        return marker in peer.received(until=ctl)
    finally:
        peer.close()


def test_the_model_mosquitto_and_emqx_agree_on_every_case(
    broker: Broker, pki: DevPki, tmp_path: Path,
    emqx_files: tuple[dict[str, Any], list[Any]],
) -> None:
    conf, terms = emqx_files
    rules = compile_rules(terms)
    services = list(pki.services)
    for case in CASES:  # the table itself must make sense
        assert case.cn not in (case.probe_by, "observer-6", "observer-7"), case
        if case.action == "subscribe":
            assert topic_matches(case.probe, real_topic(case.topic)), case
            prober = case.cn if case.probe_by == "self" else (
                "observer-7" if case.probe_by == "cloud" else case.probe_by)
            assert allows(prober, "publish", case.probe, services), case
    observer = Peer(MqttSettings(broker.host, broker.port, pki.client("observer-6")),
                    "observer-6")
    cloud = Peer(MqttSettings(broker.host, broker.port, pki.client("observer-7")), "observer-7")
    assert observer.subscribe("xd/v1/#")
    rows = []
    try:
        for n, case in enumerate(CASES):
            action: Any = case.action
            client = connecting_client(conf, case.cn, case.claimed)
            row = (
                str(case), case.expected,
                allows(case.cn, action, case.topic, services),
                mosquitto_verdict(case, n, broker, pki, tmp_path, observer, cloud),
                authorize(rules, conf, client, action, case.topic),
            )
            rows.append(row)
    finally:
        observer.close()
        cloud.close()
    wrong = [r for r in rows if len(set(r[1:])) != 1]
    assert not wrong, "case: expected, model, mosquitto, emqx\n" + "\n".join(map(str, wrong))
    assert {r[1] for r in rows} == {True, False}


def test_the_docs_listing_names_the_same_rules() -> None:
    """acl.conf is rendered from the model: a service line per service, nothing per store."""
    text = acl_conf(["ingest-1"])
    assert text.count('{user, "ingest-1"}') == 2 and "store-" not in text


def test_the_cli_writes_both_files_and_refuses_a_plaintext_listener(
    pki: DevPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.cli import main

    pki_dir = pki.ca.parent.parent
    out = tmp_path / "emqx"
    base = ["broker", "config", "--flavour", "emqx", "--dir", str(out), "--pki", str(pki_dir)]
    assert main([*base, "--port", "8884", "--bind", "10.0.0.5"]) == 0
    conf = parse_hocon((out / "emqx.conf").read_text(encoding="utf-8"))
    assert hocon_get(conf, "listeners.ssl.default.bind") == "10.0.0.5:8884"
    assert compile_rules(parse_erlang_terms((out / EMQX_ACL_NAME).read_text(encoding="utf-8")))
    assert str(out / "emqx.conf") in capsys.readouterr().out
    assert main([*base, "--dev-plaintext-local"]) == 1
    assert "Mosquitto only" in capsys.readouterr().err
