"""What the default rule pack finds on the true department values and true coverage:
the needs.csv of a scenario."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from bench.synth.world import World
from fedlink.rules import RulePack, load_rulepack
from server.pipeline.needs import apply_households, evaluate, household_labels
from fedlink.schema import DEPARTMENT_COLUMNS, DEPARTMENTS, HOUSEHOLD_DEPARTMENTS

def true_needs(world: World, pack: RulePack | None = None) -> pd.DataFrame:
    """person_id,need for what the pack finds on the true values and true coverage."""
    from agents.indicators import derive

    pack = pack or load_rulepack()
    as_of = date.fromisoformat(world.reference_date)
    n = len(world.persons)
    births = world.persons["birth_date"].to_numpy()
    facts: dict[str, np.ndarray] = {}
    for dept in DEPARTMENTS:
        m = world.members[dept]
        present = np.zeros(n, dtype=bool)
        present[m] = True
        facts[f"present:{dept}"] = present
        frame = pd.DataFrame({c: world.values[dept][c] for c in DEPARTMENT_COLUMNS[dept]})
        ind = derive(dept, frame, pd.Series(births[m]), pack, as_of)
        for col in ind.columns:
            v = np.zeros(n, dtype=bool)
            v[m] = ind[col].to_numpy() != 0
            facts[f"{dept}.{col}"] = v
    # Household indicators apply to every member, as the coordinator applies them
    # to the households it forms from the departments' household numbers: here
    # with the true household of each person a household register holds.
    household = world.persons["household"].to_numpy()
    registers = [(m, household[m]) for m in (world.members[d] for d in HOUSEHOLD_DEPARTMENTS)]
    facts = apply_households(pack, facts, household_labels(n, registers))
    rows = []
    chunk = 20000  # evaluate() looks facts up per flagged person: keep the arrays short
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sub = {k: v[lo:hi] for k, v in facts.items()}
        rows.extend((lo + f.person, f.need) for f in evaluate(pack, sub, hi - lo))
    pids = world.persons["person_id"].to_numpy()
    df = pd.DataFrame({"person_id": [pids[p] for p, _ in rows], "need": [nd for _, nd in rows]})
    return df.sort_values(["person_id", "need"], kind="stable").reset_index(drop=True)

