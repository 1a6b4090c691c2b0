"""Quality of links and flags against a scenario's truth (evaluation only:
truth is never read by an agent or the coordinator)."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from agents.extract import read_extract
from agents.normalise import feature_columns, name_pinyin, normalise_name
from agents.normalise.records import per_distinct
from fedlink.schema import Project


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_quality(links: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pairwise precision, recall and F1 of the clustering: a pair of records is
    predicted when they share a cluster and true when they share a person."""
    merged = links.merge(truth, on=["department", "record_id"], how="inner")
    predicted = _pairs(merged.groupby("cluster_id").size())
    actual = _pairs(merged.groupby("person_id").size())
    tp = _pairs(merged.groupby(["cluster_id", "person_id"]).size())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
            "true_pairs": actual, "predicted_pairs": predicted, "true_positive_pairs": tp}


def flag_quality(flags: pd.DataFrame, truth: pd.DataFrame, needs: pd.DataFrame) -> dict:
    """Per need, person-level precision and recall: a person is flagged for a
    need when any department received a flag for one of their records."""
    flagged = flags.merge(truth, on=["department", "record_id"], how="left")
    out = {}
    for need in sorted(set(needs["need"]) | set(flags["need"])):
        found = set(flagged.loc[flagged["need"] == need, "person_id"].dropna())
        true = set(needs.loc[needs["need"] == need, "person_id"])
        tp = len(found & true)
        out[need] = {
            "flagged_persons": len(found), "true_persons": len(true),
            "precision": round(tp / len(found), 4) if found else (1.0 if not true else 0.0),
            "recall": round(tp / len(true), 4) if true else 1.0,
        }
    return out


def pair_quality(links: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pairwise precision, recall and F1 for each pair of departments: only
    record pairs with one record in each of the two count."""
    merged = links.merge(truth, on=["department", "record_id"], how="inner")
    departments = sorted(merged["department"].unique())

    def cross(keys: list[str]) -> np.ndarray:
        # Records per (key, department) as a matrix; column a times column b, summed
        # over the keys, is the number of pairs with one record in each: all pairs at once.
        table = merged.groupby(keys + ["department"]).size().unstack("department", fill_value=0)
        counts = table.reindex(columns=departments, fill_value=0).to_numpy(dtype=np.int64)
        return counts.T @ counts

    predicted, actual, tp = cross(["cluster_id"]), cross(["person_id"]), cross(["cluster_id", "person_id"])
    out = {}
    for i, a in enumerate(departments):
        for j in range(i + 1, len(departments)):
            p, t_, hit = int(predicted[i, j]), int(actual[i, j]), int(tp[i, j])
            precision = hit / p if p else 1.0
            recall = hit / t_ if t_ else 1.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out[f"{a}~{departments[j]}"] = {"precision": round(precision, 5), "recall": round(recall, 5),
                                            "f1": round(f1, 5), "true_pairs": t_, "predicted_pairs": p,
                                            "true_positive_pairs": hit}
    return out


AGE_BANDS = ((0, "0-17"), (18, "18-39"), (40, "40-59"), (60, "60-79"), (80, "80+"))


def _age_band(birth: str, as_of: date) -> str:
    if not birth:
        return "unknown"
    born = date.fromisoformat(birth)
    age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
    return [label for low, label in AGE_BANDS if age >= low][-1] if age >= 0 else "unknown"


def record_groups(scenario: Path, departments: list[str], settings: dict, project: Project) -> pd.DataFrame:
    """Per record, the attributes the missed-link rates are broken down by, read
    from the scenario's extracts at evaluation only: birth date and sex as the
    schema's fields normalise them, and from the schema's name column whether
    the name is a minority name (with a middle dot) or written in pinyin only."""
    # Only what the groups need (birth date and sex, and the ID they may be
    # filled from): normalising every field is most of the time at 1M persons.
    fields = [(f.name, f.kind, f.column) for f in project.schema.fields if f.kind in ("date", "sex", "resident_id")]
    birth = next((f.name for f in project.schema.fields if f.kind == "date"), None)
    sex = next((f.name for f in project.schema.fields if f.kind == "sex"), None)
    name_col = next((f.column for f in project.schema.fields if f.kind in ("name", "pinyin")), None)
    parts = []
    for d in departments:
        frame = read_extract(Path(scenario) / f"{d}.csv", d, settings.get("columns", {}).get(d, {}), identity=None)
        feats = feature_columns(frame, fields)  # the agent's own normalisation, once per distinct value
        n = len(frame)
        raw_names = frame[name_col].tolist() if name_col and name_col in frame else [""] * n
        chars = per_distinct(normalise_name, raw_names)
        pinyin = per_distinct(name_pinyin, raw_names)
        parts.append(pd.DataFrame({
            "department": d, "record_id": frame["record_id"].tolist(),
            "birth": feats[birth] if birth else [""] * n, "sex": feats[sex] if sex else [""] * n,
            "minority": ["\u00b7" in c for c in chars],
            "pinyin_only": [bool(raw) and not c and bool(p) for raw, c, p in zip(raw_names, chars, pinyin)]}))
    groups = pd.concat(parts, ignore_index=True)
    as_of = date.fromisoformat(project.reference_date) if project.reference_date else date.today()
    groups.attrs.update(as_of=as_of, has_birth=birth is not None, has_sex=sex is not None,
                        has_name=name_col is not None)
    return groups


def _most_common_known(frame: pd.DataFrame, key: str, column: str) -> pd.Series:
    """Per `key`, the non-blank value of `column` that most of its rows give (the
    smallest of those tied, as Series.mode orders them), "" where none is known:
    counted all at once, not one group at a time (a million persons at 1M)."""
    known = frame.loc[frame[column] != "", [key, column]]
    counts = known.groupby([key, column], sort=False).size().rename("n").reset_index()
    best = counts.sort_values([key, "n", column], ascending=[True, False, True]).drop_duplicates(key)
    return best.set_index(key)[column].reindex(frame[key].unique(), fill_value="")


def _age_bands(births: pd.Series, as_of: date) -> list[str]:
    return per_distinct(lambda birth: _age_band(birth, as_of), births.tolist())


def missed_links_by_group(links: pd.DataFrame, truth: pd.DataFrame, groups: pd.DataFrame) -> dict:
    """Share of true record pairs left unlinked, by group. Age band, sex and
    minority name are the person's (the value most of their records give); a
    pair is "pinyin-only" when either of its records has its name in pinyin only."""
    merged = links.merge(truth, on=["department", "record_id"]).merge(groups, on=["department", "record_id"])
    person = merged.groupby("person_id").agg(minority=("minority", "any"))
    person["birth"] = _most_common_known(merged, "person_id", "birth")
    person["sex"] = _most_common_known(merged, "person_id", "sex")
    person["age_band"] = _age_bands(person["birth"], groups.attrs["as_of"])
    person["sex"] = person["sex"].replace("", "unknown")
    person["minority_name"] = person["minority"].map({True: "yes", False: "no"})
    recs = merged[["person_id", "cluster_id", "pinyin_only"]].reset_index(drop=True)
    recs["i"] = recs.index
    pairs = recs.merge(recs, on="person_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["i_a"] < pairs["i_b"]].join(person, on="person_id")
    pairs["missed"] = pairs["cluster_id_a"] != pairs["cluster_id_b"]
    pairs["pinyin_only_record"] = (pairs["pinyin_only_a"] | pairs["pinyin_only_b"]).map({True: "yes", False: "no"})
    wanted = [("age_band", groups.attrs["has_birth"]), ("sex", groups.attrs["has_sex"]),
              ("minority_name", groups.attrs["has_name"]), ("pinyin_only_record", groups.attrs["has_name"])]
    out = {"all": _missed(pairs)}
    for column, present in wanted:
        if present:
            out[column] = {str(value): _missed(part) for value, part in pairs.groupby(column)}
    return out


def _missed(pairs: pd.DataFrame) -> dict:
    n, missed = len(pairs), int(pairs["missed"].sum())
    return {"true_pairs": n, "missed": missed, "missed_rate": round(missed / n, 5) if n else 0.0}


def _record_pairs(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Every unordered pair of records sharing ``key``, with both records' other columns."""
    recs = frame.reset_index(drop=True)
    recs["i"] = recs.index
    pairs = recs.merge(recs, on=key, suffixes=("_a", "_b"))
    return pairs[pairs["i_a"] < pairs["i_b"]]


def fairness_by_group(links: pd.DataFrame, truth: pd.DataFrame, groups: pd.DataFrame) -> dict:
    """Recall and false-link rate per group of a realistic scenario's groups.csv
    (bench.synth.realistic.GROUPS): a record pair is in a group when either record is.
    Recall: true pairs linked / true pairs; false-link rate: linked pairs of two persons /
    linked pairs."""
    names = [c for c in groups.columns if c not in ("department", "record_id")]
    recs = links.merge(truth, on=["department", "record_id"]).merge(groups, on=["department", "record_id"])
    recs[names] = recs[names].astype(int).astype(bool)
    cols = ["person_id", "cluster_id", *names]
    true_pairs = _record_pairs(recs[cols], "person_id")
    linked = _record_pairs(recs[cols], "cluster_id")

    def score(tp: pd.DataFrame, lp: pd.DataFrame) -> dict:
        hit = int((tp["cluster_id_a"] == tp["cluster_id_b"]).sum())
        false = int((lp["person_id_a"] != lp["person_id_b"]).sum())
        return {"true_pairs": len(tp), "recall": round(hit / len(tp), 5) if len(tp) else 1.0,
                "linked_pairs": len(lp), "false_links": false,
                "false_link_rate": round(false / len(lp), 5) if len(lp) else 0.0}

    out = {"all": score(true_pairs, linked)}
    for g in names:
        out[g] = score(true_pairs[true_pairs[f"{g}_a"] | true_pairs[f"{g}_b"]],
                       linked[linked[f"{g}_a"] | linked[f"{g}_b"]])
    return out


def fairness_table(fairness: dict) -> str:
    """The per-group figures as a small text table (the bench's printed summary)."""
    lines = [f"{'group':<17} {'true pairs':>10} {'recall':>8} {'linked':>8} {'false':>6} {'false rate':>10}"]
    for g, r in fairness.items():
        lines.append(f"{g:<17} {r['true_pairs']:>10} {r['recall']:>8.4f} {r['linked_pairs']:>8} {r['false_links']:>6}"
                     f" {r['false_link_rate']:>10.4f}")
    return "\n".join(lines)
