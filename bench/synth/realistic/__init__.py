"""A synthetic population that looks like China (``fedlink synth --realism cn``).

The households, economy, welfare and department registers are bench.synth's; on top of
them (people.py, names.py, tables_cn.py) the people are named and registered as in a
Chinese city: surnames at their national shares, given names concentrated by birth
cohort and sex (about a third of 50,000 persons share their full name with someone),
twins and siblings sharing a generation character, Uyghur and Tibetan names, migrants
whose hukou is in their home county (no population record), Hong Kong, Macau and Taiwan
residents holding permits, hukou addresses apart from where people live, former names.
Each department's records then carry the register habits of rates.py (blank IDs, permit
numbers, traditional script, pinyin styles, placeholder and lunar dates, married names,
minority-name variants, which address is held) and bench.synth's typing errors
(render.py, script.py). ``groups.csv`` labels every record with the groups fairness is
measured by (render.GROUPS). Every reality can be left out on its own (``without``)."""
from bench.synth.realistic.people import CnWorld, build_cn
from bench.synth.realistic.rates import REALITIES
from bench.synth.realistic.render import GROUPS, render_department_cn

__all__ = ["GROUPS", "REALITIES", "CnWorld", "build_cn", "render_department_cn"]
