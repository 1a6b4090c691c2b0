"""Need indicators, derived locally from a department's own columns.

Only these 0/1 indicators leave the department: the amounts they are derived
from (income, costs, wages, absences) stay home (privacy model, point 5). The
thresholds come from the project's rule pack, so an operator changes them as
data; an agent only sends the indicators its department declared.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from fedlink.rules import RulePack
from fedlink.schema import DEFAULT_INDICATORS


EMPLOYMENT_STATUSES = ("employed", "unemployed", "flexible", "retired")


class IndicatorError(ValueError):
    """A department column whose value cannot be read; names row and field."""


def derive(department: str, frame: pd.DataFrame, birth_dates: pd.Series, pack: RulePack, as_of: date,
           declared: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One int8 column per declared indicator, one row per extract row.

    `frame` holds the department's raw columns as strings (blank = unknown, which
    never fires an indicator); `birth_dates` the normalised ISO birth dates.
    """
    declared = DEFAULT_INDICATORS[department] if declared is None else declared
    derive_fn = _DERIVERS[department]
    out = derive_fn(frame, birth_dates, pack, as_of)
    return pd.DataFrame({k: out[k].astype(np.int8) for k in declared}, index=frame.index)


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    """Numeric column; blank -> NaN. A value that is not a number is an error naming the row."""
    raw = frame[column] if column in frame else pd.Series("", index=frame.index)
    raw = raw.fillna("").astype(str).str.strip()
    values = pd.to_numeric(raw.where(raw != ""), errors="coerce")
    bad = values.isna() & (raw != "")
    if bad.any():
        row = bad.idxmax()
        raise IndicatorError(f"row {row}: field {column!r}: {raw[row][:20]!r} is not a number")
    if (values < 0).any():
        row = (values < 0).idxmax()
        raise IndicatorError(f"row {row}: field {column!r}: negative value")
    return values


def ages(birth_dates: pd.Series, as_of: date) -> pd.Series:
    """Whole years at `as_of`; NaN where the birth date is unknown."""
    d = pd.to_datetime(birth_dates.where(birth_dates != ""), errors="coerce", format="%Y-%m-%d")
    years = as_of.year - d.dt.year
    before_birthday = (d.dt.month > as_of.month) | ((d.dt.month == as_of.month) & (d.dt.day > as_of.day))
    return years - before_birthday.astype(float)


def _lines(frame: pd.DataFrame, pack: RulePack) -> pd.Series:
    codes = frame["region_code"].fillna("").astype(str) if "region_code" in frame else pd.Series("", index=frame.index)
    return codes.map(pack.line_for).astype(float)


def _population(frame, birth_dates, pack, as_of):
    age = ages(birth_dates, as_of)
    size = _num(frame, "household_size")
    return {
        "compulsory_school_age": age.between(pack.param("school_age_min"), pack.param("school_age_max")),
        "elderly": age >= pack.param("elderly_age"),
        "lives_alone": size == 1,
    }


def _civil_affairs(frame, birth_dates, pack, as_of):
    per_person = _num(frame, "household_monthly_income") / _num(frame, "household_size").where(lambda s: s > 0)
    line = _lines(frame, pack)
    return {
        "dibao": _num(frame, "dibao") == 1,
        "below_subsistence_line": per_person < line,
        "near_subsistence_line": (per_person >= line) & (per_person < line * pack.param("near_line_factor")),
    }


def _medical_insurance(frame, birth_dates, pack, as_of):
    return {
        "catastrophic_medical_expense": _num(frame, "out_of_pocket_12m") >= pack.param("catastrophic_oop_yuan"),
        "major_illness": _num(frame, "major_illness") == 1,
    }


def _human_resources(frame, birth_dates, pack, as_of):
    status = frame["employment_status"].fillna("").astype(str).str.strip().str.lower() if "employment_status" in frame \
        else pd.Series("", index=frame.index)
    unknown = ~status.isin(EMPLOYMENT_STATUSES + ("",))
    if unknown.any():
        row = unknown.idxmax()
        raise IndicatorError(f"row {row}: field 'employment_status': {status[row][:20]!r} is not one of "
                             f"{', '.join(EMPLOYMENT_STATUSES)}")
    months = _num(frame, "months_since_job_loss")
    # The HR register has no region code; the national floor is the conservative line.
    return {
        "unemployed": status == "unemployed",
        "recent_job_loss": (status == "unemployed") & (months <= pack.param("recent_job_loss_months")),
        "wage_above_line": _num(frame, "monthly_wage") > pack.national_floor * pack.param("wage_above_line_factor"),
    }


def _education(frame, birth_dates, pack, as_of):
    enrolled = _num(frame, "enrolled") == 1
    return {
        "enrolled": enrolled,
        "chronic_absence": enrolled & (_num(frame, "absence_days_term") >= pack.param("chronic_absence_days")),
    }


def _housing(frame, birth_dates, pack, as_of):
    return {"multiple_properties": _num(frame, "properties_owned") >= 2}


_DERIVERS = {
    "population": _population,
    "civil_affairs": _civil_affairs,
    "medical_insurance": _medical_insurance,
    "human_resources": _human_resources,
    "education": _education,
    "housing": _housing,
}
