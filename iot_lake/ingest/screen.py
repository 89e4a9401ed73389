"""Recognise plainly valid messages a whole column at a time, with no Python per message.

Checking one message at a time in Python cost the consumer about 4 us a message, most of
it building objects only to look at their types, on the one core a Python process has.
The screen instead runs one regular expression per message kind over the payload column in
polars (Rust, both cores, the GIL released), so the commit of the previous batch proceeds
beside it.

It recognises the canonical form of the wire format (iot_lake.ingest.wire): compact JSON, strings
without escapes, numbers of plain size, and the keys in the order the format lists them:

- telemetry: `{"device_id":…,"message_id":…,"ts":…[,"type":…][,"fw":…],"metrics":{…}`
  `[,"units":{…}]}`;
- events: `{"device_id":…,"message_id":…,"ts":…,"event":…` then any further fields whose
  values are strings, numbers, booleans or null, under keys other than `device_id`,
  `message_id`, `ts`, `event` and `status`;
- status: the same with `"status":"online"` or `"offline"` in place of the event.

A payload in that form is valid by construction, and its device and message ids are the
text between their quotes. The screen only ever says "valid, with this message id"; anything
else (another key order, whitespace, an escaped string, a nested extra field, and every
invalid message) goes to `iot_lake.ingest.wire.inspect_message`, which alone decides errors and
their wording. tests/iot_lake/ingest/test_wire.py mutates messages to check that the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import polars as pl

from iot_lake.ingest.wire import DEFAULT_IDENTITY
from iot_lake.settings import IdentityRules

# A JSON string without escapes or control characters (so its text is its value).
_NOT_IN_STRING = r'"\\\x00-\x1f'
_CHARACTER = rf"[^{_NOT_IN_STRING}]"
_STRING = rf'"{_CHARACTER}*"'
_NON_EMPTY_STRING = rf'"{_CHARACTER}+"'
# Integers that fit int64, and numbers a float holds (orjson and every decoder agree on them).
_INTEGER = r"-?(?:0|[1-9][0-9]{0,17})"
_NUMBER = r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?"
_SCALAR = rf"(?:{_STRING}|{_NUMBER}|true|false|null)"


def _text_other_than(words: Sequence[str], prefix: str = "") -> str:
    """A pattern for the text of an escape-free JSON string that is none of `words`.

    Regular expressions here have no negative lookahead, so the pattern spells out the
    words' trie: at each prefix of a word, the text may end (unless the prefix is itself a
    word), go on with a character no word has next, or follow one of the words.
    """
    longer = [word for word in words if word.startswith(prefix) and word != prefix]
    following = sorted({word[len(prefix)] for word in longer})
    branches = [] if prefix in words else [""]
    branches.append(rf"[^{re.escape(''.join(following))}{_NOT_IN_STRING}]{_CHARACTER}*")
    branches += [re.escape(char) + _text_other_than(words, prefix + char) for char in following]
    return f"(?:{'|'.join(branches)})"


# Events and status allow extra fields; a second `device_id`, `ts`, `event`... among them
# would override the first for a decoder, so an extra field may not use a reserved key
# (such a payload goes to the full check). Spelled into the pattern rather than checked by
# a second expression: that second scan of every event cost as much as the first.
_RESERVED_KEYS = ("device_id", "message_id", "ts", "event", "status")
_EXTRA_KEY = f'"{_text_other_than(_RESERVED_KEYS)}"'
_EXTRA_FIELDS = rf"(?:,{_EXTRA_KEY}:{_SCALAR})*"


def _object_of(value: str) -> str:
    return rf"\{{(?:{_STRING}:{value}(?:,{_STRING}:{value})*)?\}}"


KIND_CODES = {"telemetry": 0, "events": 1, "status": 2}
NO_KIND = -1


@lru_cache(maxsize=8)
def patterns(identity: IdentityRules) -> dict[int, str]:
    """The canonical form of each message kind (by KIND_CODES), with `identity`'s id rules.

    The device id needs no rule here: the payload's must equal the topic's, which the
    topic registry has checked. Metric names and the message id's length are spelled into
    the pattern, so a name outside the rule goes to the full check, which words the error.
    """
    message_id = rf'"{_CHARACTER}{{1,{identity.message_id_max_chars}}}"'
    head = rf'^\{{"device_id":{_NON_EMPTY_STRING},"message_id":{message_id},"ts":{_INTEGER}'
    metric = rf'"{identity.id_pattern}":{_NUMBER}'
    metrics = rf'"metrics":\{{{metric}(?:,{metric})*\}}'
    telemetry = (
        rf'{head}(?:,"type":{_STRING})?(?:,"fw":{_STRING})?,{metrics}'
        rf'(?:,"units":{_object_of(_STRING)})?\}}$'
    )
    events = rf'{head},"event":{_NON_EMPTY_STRING}{_EXTRA_FIELDS}\}}$'
    status = rf'{head},"status":"(?:online|offline)"{_EXTRA_FIELDS}\}}$'
    return {
        KIND_CODES["telemetry"]: telemetry,
        KIND_CODES["events"]: events,
        KIND_CODES["status"]: status,
    }


# In the canonical form the payload starts `{"device_id":"<device>","message_id":"` and
# the message id ends at the first `","ts":` (ids hold no quote): the topic's device is
# checked by a prefix comparison and the id is cut out at a byte offset, no capture group.
_DEVICE_PREFIX = '{"device_id":"'
_MESSAGE_ID_PREFIX = '","message_id":"'
_AFTER_MESSAGE_ID = '","ts":'


def screen(
    payloads: pl.Series,
    kinds: npt.NDArray[np.int8],
    devices: pl.Series,
    identity: IdentityRules = DEFAULT_IDENTITY,
) -> tuple[npt.NDArray[np.bool_], pl.Series]:
    """Which payloads are plainly valid, and their message ids (null where not).

    `kinds` is each row's message kind from its topic (KIND_CODES, NO_KIND when the topic is
    not of the wire format) and `devices` the device its topic names: a payload speaking
    for another device is not plainly valid (contract 3).
    """
    accepted = np.zeros(len(payloads), dtype=np.bool_)
    for code, pattern in patterns(identity).items():
        rows = np.flatnonzero(kinds == code)
        if not len(rows):
            continue
        of_kind = payloads.gather(rows)
        accepted[rows] = of_kind.str.contains(pattern).fill_null(False).to_numpy()
    return _with_ids(payloads, devices, accepted)


def _with_ids(
    payloads: pl.Series, devices: pl.Series, accepted: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], pl.Series]:
    """Keep the payloads in form that name their topic's device, and cut out their ids."""
    frame = pl.DataFrame({"payload": payloads, "device": devices, "accepted": accepted})
    payload = pl.col("payload")
    prefix = pl.lit(_DEVICE_PREFIX) + pl.col("device") + pl.lit(_MESSAGE_ID_PREFIX)
    # Character offsets, as `str.find` gives them: text sliced by characters is always
    # whole characters (a byte slice cast back to text can split one, and polars refuses it).
    start = pl.col("device").str.len_chars() + len(_DEVICE_PREFIX) + len(_MESSAGE_ID_PREFIX)
    end = payload.str.find(_AFTER_MESSAGE_ID, literal=True)
    message_id = payload.str.slice(start, (end - start).clip(0))
    ok = pl.col("accepted") & payload.str.starts_with(prefix).fill_null(False)
    checked = frame.select(ok=ok, message_id=pl.when(ok).then(message_id))
    return checked["ok"].to_numpy(), checked["message_id"]
