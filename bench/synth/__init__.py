"""Synthetic scenarios in the format of docs/data-format.md: what every quality
figure of fedlink is measured on.

    write_scenario(out, persons, seed=0, error_scale=1.0, reference_date="2025-06-30") -> summary

writes ``out/<department>.csv`` for the six departments, ``out/truth.csv``
(department,record_id,person_id), ``out/needs.csv`` (person_id,need) and
``out/scenario.toml``. The same seed gives the same bytes.

How the population is made (``build``, ``world.py``), in the order it happens
(``households.py``, ``identities.py``, ``economy.py``, ``welfare.py``, ``registers.py``,
one random stream each; the tables they draw from in ``tables.py``):

* Households first (sizes 1-6, China 2020 census shares: 25/30/21/13/6.5/4.5 %),
  each of a family type (elderly person alone, couple with children, three
  generations, grandparents with a left-behind grandchild, ...). Members get a
  role (head, spouse, child, grandchild, parent of the head), ages consistent
  with the role (children 21-40 years younger than the head, ...), and sex.
  The result is close to China's 2020 age pyramid (0-14 ~18 %, 60+ ~19 %).
* A household lives in one district (6-digit region code, real codes of
  Shanghai, Zhejiang, Guangdong, Gansu, Beijing, Sichuan, Henan, Hubei and
  Xinjiang) and shares one address. Migrant households in the big cities hold
  resident IDs issued in their home county (sometimes under codes that have
  since been retired, as real IDs do).
* Names: household surname by real frequency (with regional shifts: 陈/黄/梁
  in Guangdong, 顾/陆/沈 in Shanghai, 马 in Gansu), wives keep their own
  surname; given names of one or two characters from frequency-ordered
  male/female character lists, with generation styles (秀英/建国 for the old,
  梓涵/子轩 for the young). About 3 % of persons (most of them in the Xinjiang
  districts) carry Uyghur/Kazakh names ``own·father`` (买买提·吐尔逊); their
  children's second part is the father's first.
* Resident IDs after GB 11643-1999: region + birth date + sequence (odd = male)
  + ISO 7064 MOD 11-2 check character, unique.
* Economy, bottom up: a household latent class sets wages; working-age
  members are employed, in flexible work, unemployed or out of the labour
  force; retirees draw an employee pension or a small residents' pension
  (most rural elderly); a major illness (~4 %, rising with age) cuts wages
  and often the job. Household income is wages + pensions + benefits +
  transfers; per-capita income against the local subsistence line of the
  rule pack gives the poor tail. Dibao goes to ~75 % of the households below
  the line, plus households in the exit transition (income recovered above
  the line), plus inclusion errors (declared income understated, a member
  earns well above the line or owns several properties).
* Department coverage: population ~98 % of persons; civil affairs every dibao
  and low-income household plus ~15 % of other households; medical insurance
  ~90 %; human resources ~75 % of working-age people plus pensioned retirees;
  education the enrolled 6-22 year-olds (~4 % of compulsory-age children are
  not enrolled: missing from the roll or listed with enrolled=0); housing
  ~40 % of adults.

Then every department record gets the errors real registers have (``extracts.py``, see
``ERROR_RATES``; each rate is multiplied by ``error_scale`` and clipped to
[0, 1]), always on the record, never on the truth. Formats (sex as 男/女 or
M/F, date as 1985-03-07 / 1985/3/7 / 19850307 / 1985年3月7日) follow a
department habit with some mixing, which is not an error and is not scaled.

``needs.csv`` (``needs.py``) holds what the default rule pack finds on the true department
values and true coverage (``agents.indicators.derive`` per department, the
pack's household indicators applied to every member of the true household of
anyone on a household register (``server.pipeline.needs.apply_households``), then
``server.pipeline.needs.evaluate``).

Run ``python -m bench.synth OUT --persons N`` to write one from the shell.
"""
from bench.synth.extracts import ERROR_RATES, render_department
from bench.synth.ids import id_check_char, id_is_valid, resident_id
from bench.synth.needs import true_needs
from bench.synth.scenario import main, write_scenario
from bench.synth.world import World, build, true_persons

__all__ = [
    "ERROR_RATES",
    "World",
    "build",
    "id_check_char",
    "id_is_valid",
    "main",
    "render_department",
    "resident_id",
    "true_needs",
    "true_persons",
    "write_scenario",
]
