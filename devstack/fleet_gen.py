"""A fleet generator process: thousands of simulated stores, one select() loop, no threads.

Each store is a paho MQTT 5 client over TLS with the store's own certificate (the broker
makes its CN the client id and confines it to its own topics), driven through paho's
external-loop API (loop_read / loop_write / loop_misc) from one selector: a thread per
client would cost a stack and a scheduler slot each. The session is the agent's: clean
start off with a week's Session Expiry, a retained `state` at connect and as the Will,
keep-alive 270 s, QoS 1, receipts on `xd/v1/{store}/receipts` applied to the store's
outbox (devstack.fleet_store.SimStore).

Phases, driven by the parent (devstack.fleet_run) through a pipe: connect every store and
say so; wait for "go" (a common wall-clock start); publish each store's bundle every
interval (first at a random phase in the interval) until the window ends; then drain
(publish nothing new, republish overdue bundles) until every bundle is confirmed or the
drain time runs out; send back the figures.

The TLS connect (TCP, handshake, CONNECT) is blocking in paho; stores connect one after
another at start-up, between which the loop serves the sockets already open.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import selectors
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from xiaodian.wire import compact, payloads

from .fleet_store import KEEPALIVE_S, Bundle, SimStore

SESSION_EXPIRY_S = 7 * 24 * 3600  # edge.uplink.SESSION_EXPIRY_S
RECONNECT_S = 5.0
CONNECT_WINDOW = 64  # TLS handshakes in progress at once, per generator process
CONNECT_TRIES = 5
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked (u64) at 120, tcpi_bytes_received at 128.
_TCP_INFO_LEN = 136


@dataclass(frozen=True)
class GenSpec:
    """What one generator process simulates (picklable: sent to a spawned process)."""

    stores: tuple[str, ...]
    host: str
    port: int
    ca: Path
    clients_dir: Path  # <store>.crt and <store>.key per store
    seed: int


@dataclass(frozen=True)
class Phase:
    """One publishing window over the connected stores (the parent may send several, each
    at a faster cadence, over the same sessions)."""

    go: float  # wall clock of the window's start, the same in every generator
    interval_s: float  # each store's bundle every this long
    window_s: float
    drain_s: float
    confirm_timeout_s: float


@dataclass
class GenResult:
    """What a generator reports after the drain (picklable)."""

    stores: int
    connected: int
    connect_failures: int
    connect_s: float
    disconnects: int
    bundles: int  # published for the first time within the window
    readings: int
    events: int
    payload_bytes: int
    republished: int
    refused: int  # PUBACKs with a failure reason code
    confirmed_bundles: int
    confirmed_in_window: int
    unconfirmed_records: int
    duplicate_receipts: int
    latencies: list[float]  # publish -> receipt, s, per bundle published in the window
    first_seqs: list[tuple[str, int, float]]  # (store, fridge-1 first seq, published at)
    tcp_sent: int  # TLS bytes (TCP payload) over the window, both directions below
    tcp_received: int
    lags: list[float] = field(default_factory=list)  # s a bundle left after it was due
    window_s: float = 0.0
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def _tcp_bytes(sock: Any) -> tuple[int, int]:
    """(bytes sent and acknowledged, bytes received) on this TCP connection, TLS included."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, ValueError):
        return 0, 0
    if len(raw) < _TCP_INFO_LEN:
        return 0, 0
    acked, received = struct.unpack_from("<QQ", raw, 120)
    return int(acked), int(received)


class _Client(mqtt.Client):
    """paho's client, able to start on a TLS socket already connected (`prepared`): paho
    would make its own and block in the handshake. Later reconnections are paho's own."""

    prepared: ssl.SSLSocket | None = None

    def _create_socket(self) -> Any:
        sock, self.prepared = self.prepared, None
        return sock if sock is not None else super()._create_socket()


class _Store:
    """A store's client and outbox, and the callbacks paho calls on this loop's thread."""

    def __init__(self, gen: Generator, store: str, ctx: ssl.SSLContext) -> None:
        self.gen = gen
        self.sim = SimStore(store, rng=random.Random(f"{gen.spec.seed}-{store}"))
        self.client = _Client(CallbackAPIVersion.VERSION2, client_id=store,
                              protocol=mqtt.MQTTv5)
        self.ctx = ctx
        self.client.tls_set_context(ctx)
        self.client.user_data_set(self)  # the socket callbacks find their store by it
        self.client.connect_timeout = 10.0
        self.client.will_set(payloads.topic(store, "state"), self.sim.state(False, time.time()),
                             qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_socket_open = gen.sock_open
        self.client.on_socket_close = gen.sock_close
        self.client.on_socket_register_write = gen.want_write
        self.client.on_socket_unregister_write = gen.done_writing
        self.connected = False
        self.inflight: dict[int, Bundle | None] = {}
        self.bytes_at_go: tuple[int, int] | None = None

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect(self.gen.spec.host, self.gen.spec.port, KEEPALIVE_S,
                            clean_start=False, properties=props)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self.gen.errors.append(f"{self.sim.store}: refused: {reason}")
            self.gen.connect_failures += 1
            return
        self.connected = True
        self.gen.connected += 1
        client.publish(payloads.topic(self.sim.store, "state"),
                       self.sim.state(True, time.time()), qos=1, retain=True)
        client.subscribe(payloads.topic(self.sim.store, "receipts"), qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        if self.connected:
            self.gen.disconnects += 1
            self.gen.connected -= 1
        self.connected = False
        self.inflight.clear()
        if not self.gen.closing:
            self.gen.schedule(time.time() + RECONNECT_S, self, "reconnect")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self.inflight.pop(mid, None)
        if reason.is_failure:
            self.gen.refused += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            entries = compact.parse_any_receipts(
                msg.topic, bytes(msg.payload), getattr(msg.properties, "ContentType", None))
        except payloads.PayloadError as exc:
            self.gen.errors.append(f"{self.sim.store}: bad receipt: {exc}")
            return
        now = time.time()
        for bundle in self.sim.confirm(entries, now):
            if bundle.first_published >= self.gen.phase.go:  # this window's, even if late
                self.gen.latencies.append(now - bundle.first_published)
                if now <= self.gen.window_end:
                    self.gen.confirmed_in_window += 1

    def publish(self, bundle: Bundle) -> bool:
        if not self.connected:
            return False
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = compact.CONTENT_TYPE
        info = self.client.publish(payloads.topic(self.sim.store, compact.LEAF),
                                   bundle.payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self.inflight[info.mid] = bundle
        return True


class Generator:
    def __init__(self, spec: GenSpec, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.clock = clock
        self.sel = selectors.DefaultSelector()
        self.stores: list[_Store] = []
        self.timers: list[tuple[float, int, str]] = []  # (due, store index, what)
        self._index: dict[int, int] = {}  # id(_Store) -> index
        self.connected = 0
        self.connect_failures = 0
        self.retried = 0  # connection attempts that failed before the store got in
        self.disconnects = 0
        self.refused = 0
        self.republished = 0
        self.closing = False
        self.phase = Phase(0.0, 1.0, 0.0, 0.0, 30.0)
        self.window_end = float("inf")
        self.latencies: list[float] = []
        self.confirmed_in_window = 0
        self.errors: list[str] = []
        self.bundles = self.readings = self.events = self.payload_bytes = 0
        self.first_seqs: list[tuple[str, int, float]] = []
        self.lags: list[float] = []
        self.tcp_sent = self.tcp_received = 0

    # -- the selector, kept in step by paho's socket callbacks

    def sock_open(self, client: mqtt.Client, userdata: _Store, sock: Any) -> None:
        self.sel.register(sock, selectors.EVENT_READ, userdata)

    def sock_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)

    def want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._interest(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def done_writing(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._interest(sock, selectors.EVENT_READ)

    def _interest(self, sock: Any, events: int) -> None:
        try:
            key = self.sel.get_key(sock)
        except (KeyError, ValueError):
            return
        if key.events != events:
            self.sel.modify(sock, events, key.data)

    def schedule(self, due: float, store: _Store, what: str) -> None:
        heapq.heappush(self.timers, (due, self._index[id(store)], what))

    # -- driving

    def serve(self, timeout: float) -> None:
        """One select() round, then each ready client's reads and writes."""
        for key, mask in self.sel.select(timeout):
            store: _Store = key.data
            client = store.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
                sock = client.socket()
                while isinstance(sock, ssl.SSLSocket) and sock.pending():
                    client.loop_read()  # decrypted bytes select() cannot see
                    sock = client.socket()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()

    def misc(self) -> None:
        for store in self.stores:
            store.client.loop_misc()

    def connect_all(self) -> float:
        """Connect every store; seconds it took. TLS handshakes run CONNECT_WINDOW at a time
        on this loop (paho's own handshake blocks, one store after another)."""
        t0 = time.monotonic()
        for i, name in enumerate(self.spec.stores):
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.spec.ca))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.spec.clients_dir / f"{name}.crt"),
                                str(self.spec.clients_dir / f"{name}.key"))
            store = _Store(self, name, ctx)
            self.stores.append(store)
            self._index[id(store)] = i
        waiting = list(reversed(self.stores))
        shaking = selectors.DefaultSelector()
        tries: dict[str, int] = {}
        deadline = time.monotonic() + 120 + 0.05 * len(self.stores)
        while (waiting or shaking.get_map()) and time.monotonic() < deadline:
            while waiting and len(shaking.get_map()) < CONNECT_WINDOW:
                store = waiting.pop()
                raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                raw.setblocking(False)
                raw.connect_ex((self.spec.host, self.spec.port))
                shaking.register(raw, selectors.EVENT_WRITE, store)
            for key, _ in shaking.select(0.05):
                sock, store = key.fileobj, key.data
                try:
                    if not isinstance(sock, ssl.SSLSocket):
                        # TCP connected: only now wrap it (Python's wrap_socket reads from
                        # a socket not yet connected, which fails when it is non-blocking).
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                        if err:
                            raise OSError(err, os.strerror(err))
                        shaking.unregister(sock)
                        sock = store.ctx.wrap_socket(sock, server_hostname=self.spec.host,
                                                     do_handshake_on_connect=False)
                        shaking.register(sock, selectors.EVENT_WRITE, store)
                    sock.do_handshake()
                except ssl.SSLWantReadError:
                    shaking.modify(sock, selectors.EVENT_READ, store)
                    continue
                except (ssl.SSLWantWriteError, BlockingIOError):
                    shaking.modify(sock, selectors.EVENT_WRITE, store)
                    continue
                except OSError as exc:
                    with contextlib.suppress(KeyError, ValueError):
                        shaking.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    # As an agent does: try again (a loaded broker's backlog overflows).
                    tries[store.sim.store] = tries.get(store.sim.store, 0) + 1
                    if tries[store.sim.store] < CONNECT_TRIES:
                        waiting.insert(0, store)
                        self.retried += 1
                    else:
                        self._connect_failed(store, exc)
                    continue
                shaking.unregister(sock)
                store.client.prepared = sock
                try:
                    store.connect()
                except OSError as exc:
                    self._connect_failed(store, exc)
            self.serve(0)
        for key in list(shaking.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
            self._connect_failed(key.data, TimeoutError("TLS handshake not finished"))
        for store in waiting:
            self._connect_failed(store, TimeoutError("never tried"))
        while self.connected + self.connect_failures < len(self.stores):
            if time.monotonic() > deadline:
                break
            self.serve(0.1)
        return time.monotonic() - t0

    def _connect_failed(self, store: _Store, exc: BaseException) -> None:
        self.connect_failures += 1
        self.errors.append(f"{store.sim.store}: {exc}")

    def run(self, phase: Phase) -> None:
        """Publish from `phase.go` until the window ends, then drain."""
        self._reset()
        self.phase = phase
        self.window_end = phase.go + phase.window_s
        rng = random.Random(self.spec.seed)
        self.timers = [t for t in self.timers if t[2] != "bundle"]
        heapq.heapify(self.timers)
        for store in self.stores:
            store.sim.confirm_timeout_s = phase.confirm_timeout_s
            self.schedule(phase.go + rng.uniform(0, phase.interval_s), store, "bundle")
        while self.clock() < phase.go:
            self.serve(min(0.2, max(0.0, phase.go - self.clock())))
        for store in self.stores:
            sock = store.client.socket()
            store.bytes_at_go = _tcp_bytes(sock) if sock is not None else (0, 0)
        drain_end = self.window_end + phase.drain_s
        next_misc = next_overdue = 0.0
        window_open = True
        while True:
            now = self.clock()
            if window_open and now >= self.window_end:
                window_open = False
                self._window_bytes()
            if not window_open and (now >= drain_end or self._all_confirmed()):
                break
            while self.timers and self.timers[0][0] <= now:
                due, index, what = heapq.heappop(self.timers)
                self._due(self.stores[index], what, due, now)
            if now >= next_misc:
                self.misc()
                next_misc = now + 1.0
            if now >= next_overdue:
                self._republish_overdue(now)
                next_overdue = now + 1.0
            wait = 0.2 if not self.timers else max(0.0, min(0.2, self.timers[0][0] - now))
            self.serve(wait)

    def _reset(self) -> None:
        """Per-window figures start again (the sessions and outboxes carry on)."""
        self.latencies, self.first_seqs, self.lags = [], [], []
        self.confirmed_in_window = self.republished = self.refused = self.disconnects = 0
        self.bundles = self.readings = self.events = self.payload_bytes = 0
        self.tcp_sent = self.tcp_received = 0
        for store in self.stores:
            store.sim.confirmed.clear()

    def _due(self, store: _Store, what: str, due: float, now: float) -> None:
        if what == "reconnect":
            if not store.connected and not self.closing:
                try:
                    store.client.reconnect()
                except (OSError, ssl.SSLError) as exc:
                    self.errors.append(f"{store.sim.store}: reconnect: {exc}")
                    self.schedule(now + RECONNECT_S, store, "reconnect")
            return
        if due >= self.window_end:
            return  # the window is over: nothing new (a bundle due before it but late still goes)
        self.schedule(due + self.phase.interval_s, store, "bundle")
        self.lags.append(now - due)
        bundle = store.sim.next_bundle(now)
        self.bundles += 1
        self.readings += bundle.readings
        self.events += bundle.events
        self.payload_bytes += len(bundle.payload)
        first = min(k[3] for k in bundle.keys if k[0] == "readings" and k[1] == "fridge-1")
        self.first_seqs.append((store.sim.store, first, bundle.first_published))
        store.publish(bundle)  # if offline: still in the outbox, republished when overdue

    def _republish_overdue(self, now: float) -> None:
        for store in self.stores:
            if not store.connected or not store.sim.outbox:
                continue
            for bundle in store.sim.overdue(now):
                if store.publish(bundle):
                    bundle.last_published = now
                    bundle.publishes += 1
                    self.republished += 1

    def _all_confirmed(self) -> bool:
        return all(not s.sim.outbox for s in self.stores)

    def _window_bytes(self) -> None:
        for store in self.stores:
            sock = store.client.socket()
            if sock is None or store.bytes_at_go is None:
                continue
            sent, received = _tcp_bytes(sock)
            self.tcp_sent += max(0, sent - store.bytes_at_go[0])
            self.tcp_received += max(0, received - store.bytes_at_go[1])

    def close(self) -> None:
        """Disconnect as the agent does: an explicit offline state, then DISCONNECT."""
        self.closing = True
        for store in self.stores:
            if store.connected:
                store.client.publish(payloads.topic(store.sim.store, "state"),
                                     store.sim.state(False, time.time()), qos=1, retain=True)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(s.client.want_write() for s in self.stores):
            self.serve(0.05)
        for store in self.stores:
            if store.connected:
                store.client.disconnect()
        self.serve(0.1)

    def result(self, connect_s: float) -> GenResult:
        confirmed = sum(len(s.sim.confirmed) for s in self.stores)
        return GenResult(
            stores=len(self.stores), connected=self.connected,
            connect_failures=self.connect_failures, connect_s=connect_s,
            disconnects=self.disconnects, bundles=self.bundles, readings=self.readings,
            events=self.events, payload_bytes=self.payload_bytes,
            republished=self.republished, refused=self.refused, confirmed_bundles=confirmed,
            confirmed_in_window=self.confirmed_in_window,
            unconfirmed_records=sum(s.sim.pending_records for s in self.stores),
            duplicate_receipts=sum(s.sim.duplicate_receipts for s in self.stores),
            latencies=self.latencies, first_seqs=self.first_seqs,
            tcp_sent=self.tcp_sent, tcp_received=self.tcp_received, lags=self.lags,
            window_s=self.phase.window_s,
            errors=self.errors[:20])


def generator_main(spec: GenSpec, conn: Connection) -> None:
    """A spawned process's body: connect and report; then for each Phase the parent sends,
    run it and report; stop (disconnecting as the agent does) at "stop"."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(spec.stores) + 64
    if soft < need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    gen = Generator(spec)
    connect_s = gen.connect_all()
    conn.send(("connected", gen.connected, gen.connect_failures, connect_s, gen.errors[:5]))
    while True:
        next_misc = 0.0
        while not conn.poll(0):  # keep the sessions served between windows
            gen.serve(0.2)
            if time.monotonic() >= next_misc:
                gen.misc()
                next_misc = time.monotonic() + 1.0
        message = conn.recv()
        if not isinstance(message, Phase):
            break
        before = resource.getrusage(resource.RUSAGE_SELF)
        gen.run(message)
        result = gen.result(connect_s)
        after = resource.getrusage(resource.RUSAGE_SELF)
        result.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        conn.send(("done", result))
    gen.close()


def foreign_publish(host: str, port: int, ca: Path, cert: Path, key: Path, own: str,
                    other: str, timeout: float = 10.0) -> str:
    """Connect as store `own` and publish a bundle on store `other`'s topic; the PUBACK's
    reason (the broker must refuse it: its ACL confines a store to xd/v1/<its CN>/...)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=own, protocol=mqtt.MQTTv5)
    client.tls_set_context(ctx)
    reasons: list[str] = []
    client.on_publish = lambda c, u, mid, reason, props: reasons.append(str(reason))
    client.connect(host, port, 30)
    sim = SimStore(other)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = compact.CONTENT_TYPE
    client.publish(payloads.topic(other, compact.LEAF), sim.next_bundle(time.time()).payload,
                   qos=1, properties=props)
    deadline = time.monotonic() + timeout
    while not reasons and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return reasons[0] if reasons else "no PUBACK"
