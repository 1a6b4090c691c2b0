"""Quality of links and flags against a scenario's truth (evaluation only:
truth is never read by an agent or the coordinator)."""
from __future__ import annotations

import pandas as pd


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
