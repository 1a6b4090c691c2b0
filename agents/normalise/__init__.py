"""Canonical identity features from one raw extract row.

Pure functions, no state beyond module-level compiled patterns and caches.
Every function takes arbitrary text and returns a str (or a ResidentId of
strs); "" means "unknown", which the encoder leaves out of the filter rather
than encoding a guess. Nothing here logs or prints a value: these are raw
identities.

The point of every rule is that two departments' renderings of the same
person come out equal (or nearly so, for the q-gram encoder), not that the
output is a faithful copy of the input.

One module per kind of field: ``names`` (characters and pinyin), ``dates``,
``resident_ids``, ``addresses``, ``fields`` (sex, phone, Latin text, digits);
``records`` applies them to extract rows, once per distinct value of a column.
"""
from agents.normalise.addresses import normalise_address
from agents.normalise.dates import normalise_date
from agents.normalise.fields import normalise_digits, normalise_phone, normalise_sex, normalise_text
from agents.normalise.names import name_pinyin, normalise_name
from agents.normalise.records import feature_columns, normalise_record, record_features
from agents.normalise.resident_ids import ResidentId, check_char, parse_resident_id, parse_resident_ids

__all__ = [
    "ResidentId",
    "check_char",
    "feature_columns",
    "name_pinyin",
    "normalise_address",
    "normalise_date",
    "normalise_name",
    "normalise_digits",
    "normalise_phone",
    "normalise_record",
    "normalise_sex",
    "normalise_text",
    "parse_resident_id",
    "parse_resident_ids",
    "record_features",
]
