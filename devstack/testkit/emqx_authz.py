"""A small evaluator of EMQX 5's file authorization, for checking a rendered acl.conf
without EMQX. It implements what EMQX documents and does (emqx_authz_rule, emqx_topic):

- rules are tried top to bottom and the first whose action, client and topic all match
  decides; none matching -> `authorization.no_match` of emqx.conf;
- `{Permission, all}` is `{Permission, all, all, ["#"]}`;
- a client is `all`, `{user|username, Name}`, `{client|clientid, Id}`, `{'and'|'or', [..]}`;
- a topic is a filter (with `${username}` / `${clientid}` placeholders rendered from the
  client), or `{eq, T}` / `"eq T"`, matching T literally;
- a subscription `$share/<group>/<filter>` (or `$queue/<filter>`) is judged on `<filter>`;
- matching is emqx_topic:match on words: a subscribed filter's `+`/`#` is a word that only
  a rule's wildcard covers. (Its `$`-topic rule applies to binaries only, and authorization
  passes words, so it is not applied here either.)

The client's username and id come from emqx.conf: `mqtt.peer_cert_as_username = cn` makes
the username the certificate CN, `peer_cert_as_clientid = cn` likewise the client id; other
values leave what the client claimed. Anything else in acl.conf (regular expressions, IP
addresses, QoS/retain actions) is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .emqx_files import Atom, ErlTerm, HoconValue, hocon_get

Action = Literal["publish", "subscribe"]
_PLACEHOLDERS = {"${username}": "username", "${clientid}": "clientid"}


@dataclass(frozen=True)
class Client:
    username: str | None
    clientid: str


@dataclass(frozen=True)
class Rule:
    allow: bool
    who: ErlTerm
    action: str  # publish | subscribe | all
    topics: tuple[tuple[bool, str], ...]  # (literal `eq`, filter)


def connecting_client(conf: dict[str, HoconValue], cn: str, claimed_clientid: str,
                      claimed_username: str | None = None) -> Client:
    """What EMQX makes of a TLS client with certificate CN `cn` claiming these names."""

    def setting(key: str) -> HoconValue:
        try:
            return hocon_get(conf, f"mqtt.{key}")
        except KeyError:
            return "disabled"

    username = cn if setting("peer_cert_as_username") == "cn" else claimed_username
    clientid = cn if setting("peer_cert_as_clientid") == "cn" else claimed_clientid
    return Client(username, clientid)


def _atom(term: ErlTerm, what: str) -> str:
    if not isinstance(term, Atom):
        raise ValueError(f"{what}: expected an atom, got {term!r}")
    return term.name


def _check_who(who: ErlTerm) -> None:
    if isinstance(who, Atom) and who.name == "all":
        return
    if isinstance(who, tuple) and len(who) == 2 and isinstance(who[0], Atom):
        kind, arg = who[0].name, who[1]
        if kind in ("user", "username", "client", "clientid") and isinstance(arg, str):
            return
        if kind in ("and", "or") and isinstance(arg, list):
            for item in arg:
                _check_who(item)
            return
    raise ValueError(f"client condition not supported here: {who!r}")


def _topic(term: ErlTerm) -> tuple[bool, str]:
    if isinstance(term, tuple) and len(term) == 2 and term[0] == Atom("eq") \
            and isinstance(term[1], str):
        return True, term[1]
    if isinstance(term, str):
        if term.startswith("eq "):
            return True, term[3:]
        rest = term
        for placeholder in _PLACEHOLDERS:
            rest = rest.replace(placeholder, "")
        if "${" in rest:
            raise ValueError(f"unknown placeholder in {term!r}")
        return False, term
    raise ValueError(f"topic not supported here: {term!r}")


def compile_rules(terms: Sequence[ErlTerm]) -> list[Rule]:
    rules = []
    for term in terms:
        if not isinstance(term, tuple):
            raise ValueError(f"a rule is a tuple: {term!r}")
        if len(term) == 2:
            term = (term[0], Atom("all"), Atom("all"), ["#"])
        if len(term) != 4 or not isinstance(term[3], list):
            raise ValueError(f"a rule is {{Permission, Who, Action, Topics}}: {term!r}")
        permission = _atom(term[0], "permission")
        if permission not in ("allow", "deny"):
            raise ValueError(f"permission: {permission}")
        _check_who(term[1])
        action = _atom(term[2], "action")
        if action not in ("publish", "subscribe", "all"):
            raise ValueError(f"action not supported here: {action}")
        rules.append(Rule(permission == "allow", term[1], action,
                          tuple(_topic(t) for t in term[3])))
    return rules


def _who_matches(client: Client, who: ErlTerm) -> bool:
    if isinstance(who, Atom):
        return True  # all
    assert isinstance(who, tuple) and isinstance(who[0], Atom)
    kind, arg = who[0].name, who[1]
    if kind in ("user", "username"):
        return client.username is not None and client.username == arg
    if kind in ("client", "clientid"):
        return client.clientid == arg
    assert isinstance(arg, list)
    results = [_who_matches(client, item) for item in arg]
    return all(results) if kind == "and" else any(results)


def words_match(name: list[str], filt: list[str]) -> bool:
    """emqx_topic:match/2 on word lists."""
    if not name and not filt:
        return True
    if name and filt and (name[0] == filt[0] or filt[0] == "+"):
        return words_match(name[1:], filt[1:])
    return filt == ["#"]


def _render(template: str, client: Client) -> str:
    for placeholder, field in _PLACEHOLDERS.items():
        if placeholder in template:
            value = getattr(client, field)
            if value is None:  # render_strict: EMQX refuses an undefined variable
                raise ValueError(f"{placeholder} is undefined for {client}")
            template = template.replace(placeholder, value)
    return template


def real_topic(topic: str) -> str:
    """emqx_topic:get_shared_real_topic/1."""
    if topic.startswith("$share/"):
        return topic.split("/", 2)[2]
    if topic.startswith("$queue/"):
        return topic[len("$queue/"):]
    return topic


def authorize(rules: Sequence[Rule], conf: dict[str, HoconValue], client: Client,
              action: Action, topic: str) -> bool:
    """True if EMQX would allow `client` to `action` `topic` (a filter, for subscribe)."""
    if action == "subscribe":
        topic = real_topic(topic)
    words = topic.split("/")
    for rule in rules:
        if rule.action not in (action, "all") or not _who_matches(client, rule.who):
            continue
        for literal, filt in rule.topics:
            if literal:
                if words == filt.split("/"):
                    return rule.allow
            elif words_match(words, _render(filt, client).split("/")):
                return rule.allow
    try:
        no_match = hocon_get(conf, "authorization.no_match")
    except KeyError:
        no_match = "allow"  # EMQX's default
    return no_match == "allow"
