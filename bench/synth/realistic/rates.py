"""The realities of a realistic scenario and their rates per department record.

Each reality can be switched off on its own (``without``) so its cost can be measured:
every random number is drawn whether the reality is on or not, so switching one off
changes nothing else. Person-level facts (who is a migrant, a permit holder, has a former
name, is a twin) are not scaled; the register habits below are multiplied by
``error_scale`` like the typing errors (bench.synth.ERROR_RATES) and clipped to [0, 1]."""
from __future__ import annotations

from fedlink.schema import DEPARTMENTS

REALITIES = {
    "blank_ids": "resident ID left blank (housing and human-resources registers most)",
    "permits": "Hong Kong, Macau and Taiwan residents: a permit number in place of an ID, no hukou",
    "migrants": "hukou in another place: no population record, hukou address in the home county",
    "addresses": "hukou address vs where people live, recent moves, a second property",
    "traditional": "names and addresses in traditional characters (Guangdong, Hong Kong-linked)",
    "pinyin": "names in pinyin only, in many styles",
    "minority_variants": "Uyghur names without the father's name, other separators, transliteration "
                         "variants; Tibetan names in the other dialect's spelling",
    "married_names": "a married woman's name with her husband's surname prefixed",
    "former_names": "a former name (曾用名) where the register was not updated",
    "blank_dates": "birth date left blank",
    "placeholder_dates": "only the year known: YYYY-01-01 or YYYY-07-01",
    "lunar_dates": "a lunar birthday written as a solar date",
    "namesakes": "given names concentrated by cohort (off: every given name composed, nearly unique)",
    "families": "twins, and siblings sharing a generation character",
}

DEPTS = DEPARTMENTS  # the columns of the tables below

# Register habits: rate per record of the department, in the order of DEPTS; the
# population it applies to is in the comment.
RECORD_RATES = {
    "id_blank":          (0.002, 0.010, 0.020, 0.120, 0.040, 0.150),  # every record
    "date_blank":        (0.002, 0.010, 0.010, 0.030, 0.005, 0.060),  # every record
    "date_placeholder":  (0.020, 0.080, 0.050, 0.050, 0.000, 0.080),  # persons born before 1960
    "date_lunar":        (0.010, 0.060, 0.030, 0.020, 0.000, 0.040),  # persons born before 1970
    "pinyin":            (0.002, 0.005, 0.030, 0.020, 0.010, 0.020),  # every record
    "traditional":       (0.010, 0.030, 0.050, 0.080, 0.020, 0.100),  # persons living in Guangdong
    "traditional_permit": (0.0, 0.600, 0.600, 0.600, 0.400, 0.700),   # permit holders
    "married_prefix":    (0.000, 0.100, 0.100, 0.000, 0.000, 0.100),  # married women born before 1950
    "married_prefix_hk": (0.0, 0.300, 0.300, 0.300, 0.000, 0.300),    # married women holding a HK/MO permit
    "former_name":       (0.000, 0.300, 0.300, 0.400, 0.200, 0.500),  # persons with a former name
    "uyghur_no_father":  (0.010, 0.050, 0.150, 0.200, 0.050, 0.200),  # Uyghur names
    "uyghur_separator":  (0.050, 0.150, 0.300, 0.300, 0.100, 0.300),  # Uyghur names: not the middle dot
    "uyghur_translit":   (0.020, 0.080, 0.100, 0.100, 0.050, 0.100),  # each part of a Uyghur name
    "tibetan_spelling":  (0.050, 0.150, 0.200, 0.200, 0.100, 0.200),  # each part of a Tibetan name
}
# Which address a register holds for a person who lives elsewhere than their hukou
# (人户分离): the hukou address, else where they live; a register not updated after a
# recent move keeps the one before it; the housing register lists a second property.
ADDRESS_RATES = {
    "hukou":       (1.000, 0.700, 0.500, 0.200, 0.300, 0.000),
    "stale":       (0.000, 0.200, 0.300, 0.300, 0.100, 0.200),  # persons who moved recently
    "second_home": (0.000, 0.000, 0.000, 0.000, 0.000, 0.500),  # owners of two or more properties
}
# Person-level facts.
PERSON_RATES = {
    "separated": 0.25,      # local households living away from their hukou address
    "moved": 0.10,          # households that moved in the last years
    "settled": 0.20,        # migrant households that have taken out a local hukou
    "former_name": 0.015,   # persons with a former name
}
# Pinyin styles (shares): surname first, given name first, syllables split, capitals,
# no spaces; ü (吕, 女, 律 ...) is written ü, v, u or yu.
PINYIN_STYLES = (("surname_first", 0.35), ("capitals", 0.20), ("given_first", 0.15), ("split", 0.15),
                 ("no_spaces", 0.10), ("lower", 0.05))
UMLAUT_FORMS = (("v", 0.45), ("u", 0.30), ("yu", 0.15), ("ü", 0.10))


def rate(name: str, dept: str, scale: float = 1.0) -> float:
    return float(min(1.0, max(0.0, RECORD_RATES[name][DEPTS.index(dept)] * scale)))


def address_rate(name: str, dept: str) -> float:
    return ADDRESS_RATES[name][DEPTS.index(dept)]


def check_without(without) -> frozenset[str]:
    unknown = sorted(set(without) - set(REALITIES))
    if unknown:
        raise ValueError(f"unknown realities {', '.join(unknown)}; known: {', '.join(REALITIES)}")
    return frozenset(without)
