"""What a proposed change would change, and who would newly learn what.

An officer decides on a proposal (server/domain/approvals.py) by reading this:
one `Item` per changed rule, parameter, setting and disclosure grant (who
receives which need's flags and reads which evidence: fedlink/rules.py's
`grants`), and plain lines saying which department would newly receive which
flags on which facts. Rule packs are compared as parsed TOML, rule by rule (by name), so
every key of the pack is shown whether or not this module knows what it
means (a disclosure policy, a new section); nothing in a pack changes unseen.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass

from fedlink.rules import RulePack, load_rulepack
from fedlink.schema import LinkageSchema

# Sections read below with their meaning; any other key is compared as a path.
_KNOWN = {"rules", "suppression_k", "parameters", "subsistence_line", "version", "disclosure"}


@dataclass(frozen=True)
class Item:
    area: str      # rules, disclosure, suppression_k, parameters, subsistence_line, threshold, key_check, or the key
    item: str      # the rule, parameter or setting
    before: str    # "" when added
    after: str     # "" when removed
    widens: bool   # someone may learn more than before
    plain: str     # the change in words


@dataclass(frozen=True)
class Diff:
    items: tuple[Item, ...]
    newly_disclosed: tuple[str, ...]

    def to_json(self) -> dict:
        return {"items": [vars(i) for i in self.items], "newly_disclosed": list(self.newly_disclosed)}

    @classmethod
    def from_json(cls, data: dict) -> "Diff":
        return cls(tuple(Item(**i) for i in data["items"]), tuple(data["newly_disclosed"]))


def _show(value) -> str:
    return "" if value is None else str(value)


def _grant(need: str, recipient: str, what: str) -> str:
    """One thing the disclosure policy lets a recipient learn, in words."""
    who = recipient.replace("_", " ")
    if what == "flag":
        return f"{who} would receive {need} flags on the people it holds"
    if what == "departments_linked":
        return f"{who} would see which departments hold each person of its {need} flags"
    return f"{who} would read {what} on its {need} flags"


def _rule_told(rule, pack: RulePack) -> list[str]:
    """What the recipients of a rule's need would learn from its flags, under the policy of `pack`."""
    policy = pack.disclosure.get(rule.need)
    out = []
    for r in (policy.recipients if policy else ()):
        shown = [t for t in rule.terms if policy.shows(r, t) and not t.removeprefix("not ").startswith(f"{r}.")]
        out.append(f"{r.replace('_', ' ')} would receive {rule.need} flags (rule {rule.name}, tier {rule.tier}) "
                   f"on the people it holds for whom {rule.when!r} holds; it reads "
                   + (", ".join(shown) if shown else "nothing of other departments by name") + " of them")
    return out


def _rule_items(old: dict, new: dict, new_pack: RulePack) -> tuple[list[Item], list[str]]:
    items, told = [], []
    parsed = {r.name: r for r in new_pack.rules}
    before = {r["name"]: r for r in old.get("rules", [])}
    after = {r["name"]: r for r in new.get("rules", [])}
    for name in sorted(set(after) - set(before)):
        r = after[name]
        items.append(Item("rules", name, "", f"{r['need']} tier {r['tier']} when {r['when']!r}", True,
                          f"new rule {name}"))
        told += _rule_told(parsed[name], new_pack)
    for name in sorted(set(before) - set(after)):
        items.append(Item("rules", name, before[name]["when"], "", False, f"rule {name} removed: its flags end"))
    for name in sorted(set(before) & set(after)):
        old_r, new_r = before[name], after[name]
        for key in sorted(set(old_r) | set(new_r)):
            if old_r.get(key) == new_r.get(key):
                continue
            widens = key not in ("explain", "explain_zh")
            items.append(Item("rules", f"{name}.{key}", _show(old_r.get(key)), _show(new_r.get(key)), widens,
                              f"rule {name}: {key} changed"))
            if key in ("when", "need", "tier"):
                told += _rule_told(parsed[name], new_pack)
    return items, told


def _policy_items(old_pack: RulePack, new_pack: RulePack) -> tuple[list[Item], list[str]]:
    """The disclosure policy, grant by grant: who receives which need's flags and reads what."""
    added, removed = new_pack.grants() - old_pack.grants(), old_pack.grants() - new_pack.grants()
    items = [Item("disclosure", f"{need}.{r}", "", what, True, _grant(need, r, what)) for need, r, what in sorted(added)]
    items += [Item("disclosure", f"{need}.{r}", what, "", False, f"no longer: {_grant(need, r, what)}")
              for need, r, what in sorted(removed)]
    old_order = {n: d.recipients for n, d in old_pack.disclosure.items()}
    for need, d in sorted(new_pack.disclosure.items()):
        was = old_order.get(need)
        if was is not None and set(was) == set(d.recipients) and tuple(was) != tuple(d.recipients):
            # The first recipient holding the person gets the flag: a new order moves flags between them.
            items.append(Item("disclosure", f"{need}.recipients", ", ".join(was), ", ".join(d.recipients), True,
                              f"{need} flags would go first to {d.recipients[0].replace('_', ' ')}"))
    return items, [_grant(*g) for g in sorted(added)] + [i.plain for i in items if i.item.endswith(".recipients")]


def _flatten(value, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _setting_items(old: dict, new: dict) -> list[Item]:
    """Parameters, regional lines and every key this module does not read, path by path."""
    items = []
    for section in sorted((set(old) | set(new)) - (_KNOWN - {"parameters", "subsistence_line"})):
        a, b = _flatten(old.get(section), section), _flatten(new.get(section), section)
        for path in sorted(set(a) | set(b)):
            if a.get(path) == b.get(path):
                continue
            if section in ("parameters", "subsistence_line"):
                plain = f"{path} {_show(a.get(path)) or '(none)'} -> {_show(b.get(path)) or '(none)'}: changes " \
                        "which people are flagged"
            else:
                plain = f"{path}: {_show(a.get(path)) or '(not set)'} -> {_show(b.get(path)) or '(not set)'}"
            items.append(Item(section, path, _show(a.get(path)), _show(b.get(path)), True, plain))
    return items


def rules_diff(old_text: str, new_text: str) -> Diff:
    """Between two rule packs (both valid: load_rulepack has accepted them)."""
    old_pack, new_pack = load_rulepack(old_text), load_rulepack(new_text)
    old, new = tomllib.loads(old_pack.text), tomllib.loads(new_pack.text)
    items, told = _rule_items(old, new, new_pack)
    policy, policy_told = _policy_items(old_pack, new_pack)
    items, told = items + policy, told + policy_told
    if old_pack.suppression_k != new_pack.suppression_k:
        lower = new_pack.suppression_k < old_pack.suppression_k
        items.append(Item("suppression_k", "suppression_k", str(old_pack.suppression_k), str(new_pack.suppression_k),
                          lower, "report cells of fewer people would be shown" if lower
                          else "more report cells would be withheld"))
        if lower:
            told.append(f"operators and officers would see report counts of {new_pack.suppression_k} to "
                        f"{old_pack.suppression_k - 1} people, withheld until now")
    settings = _setting_items(old, new)
    told += [i.plain for i in settings if i.area not in ("parameters", "subsistence_line")]
    return Diff(tuple(items + settings), tuple(dict.fromkeys(told)))


def linkage_diff(old: LinkageSchema, threshold: float, auto: bool) -> Diff:
    items, told = [], []
    if threshold != old.threshold:
        lower = threshold < old.threshold
        items.append(Item("threshold", "schema.threshold", str(old.threshold), str(threshold), lower,
                          "records would link at a lower similarity" if lower else "fewer records would link"))
    if auto != old.auto_threshold:
        items.append(Item("threshold", "schema.auto_threshold", str(old.auto_threshold), str(auto), not auto,
                          "the threshold would no longer be raised per department pair" if not auto
                          else "the threshold would be raised per department pair from its scores"))
    if any(i.widens for i in items):
        told.append("every department would receive flags on people linked on weaker evidence, and so may learn "
                    "other departments' facts about people who are not who they hold")
    return Diff(tuple(items), tuple(told))


def key_check_reset_diff(pinned_by: str | None) -> Diff:
    return Diff((Item("key_check", "key_check", f"pinned by {pinned_by}" if pinned_by else "not pinned",
                      "not pinned", False, "the next department to upload pins the key check again; every other "
                      "department's secret must then match it"),),
                ("no data: the next upload's department decides which project secret the others must hold",))


def rule_changes(old, new) -> dict:
    """What a rule pack change changed, by name: the details of the rules.update audit event."""
    params = {k: [old.parameters.get(k), v] for k, v in new.parameters.items() if old.parameters.get(k) != v}
    lines = {k: [old.subsistence_lines.get(k), new.subsistence_lines.get(k)]
             for k in set(old.subsistence_lines) | set(new.subsistence_lines)
             if old.subsistence_lines.get(k) != new.subsistence_lines.get(k)}
    if old.national_floor != new.national_floor:
        lines["national_floor"] = [old.national_floor, new.national_floor]
    old_rules = {r.name: r for r in old.rules}
    new_rules = {r.name: r for r in new.rules}
    return {
        "parameters": params, "subsistence_lines": lines,
        "rules_added": sorted(set(new_rules) - set(old_rules)),
        "rules_removed": sorted(set(old_rules) - set(new_rules)),
        "rules_changed": sorted(n for n in set(old_rules) & set(new_rules) if old_rules[n] != new_rules[n]),
        "suppression_k": [old.suppression_k, new.suppression_k] if old.suppression_k != new.suppression_k else None,
        # What anyone would newly learn, or no longer learn: (need, recipient, evidence kind | flag | ...).
        "disclosure_added": sorted(map(list, new.grants() - old.grants())),
        "disclosure_removed": sorted(map(list, old.grants() - new.grants())),
    }
