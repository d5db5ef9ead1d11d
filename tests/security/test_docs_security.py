"""docs/security.md shows the broker's generated ACL and subscribe rules exactly: each block
after a `<!-- generated: CALL -->` marker must equal what devstack.broker writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devstack.broker import acl_text, subscribe_rules
from devstack.broker_emqx import acl_conf

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BLOCK = re.compile(r"<!-- generated: (?P<call>[^\n]*?) -->\n```[a-z]*\n(?P<body>.*?)```",
                   re.DOTALL)


def generated_blocks() -> dict[str, str]:
    return {m["call"]: m["body"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def test_the_acl_listing_is_the_generated_acl_file() -> None:
    assert generated_blocks()['acl_text(["ingest-1"])'] == acl_text(["ingest-1"])


def test_the_subscribe_rules_listing_is_the_generated_file() -> None:
    body = generated_blocks()['subscribe_rules(["store-001"], ["ingest-1"])']
    rules = subscribe_rules(["store-001"], ["ingest-1"])
    # The same bytes the broker's file has (write_broker_config: indent=1, a newline).
    assert body == json.dumps(rules, indent=1) + "\n"


def test_the_emqx_acl_listing_is_the_generated_acl_conf() -> None:
    assert generated_blocks()['acl_conf(["ingest-1"])'] == acl_conf(["ingest-1"])


def test_every_generated_block_is_checked() -> None:
    assert set(generated_blocks()) == {
        'acl_text(["ingest-1"])',
        'subscribe_rules(["store-001"], ["ingest-1"])',
        'acl_conf(["ingest-1"])',
    }
