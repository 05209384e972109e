"""The verdict engine, calibrated: how often each verdict comes out when the truth is known.

Every error rate the report promises is shown here by simulation, on the analysis's own code:

1. **Verdict shares** (``claims.decide``): per claim and data set, ``n`` per-seed differences
   from a normal distribution with the claim's seed sd and a true effect in units of its
   margin (null 0, small 0.5, margin-sized 1); the share of each verdict, and the family-wise
   rate of a false ``reproduced`` or ``contradicted`` (a decided verdict where the truth is 0,
   or a ``contradicted`` where it lies on the claimed side) per declared family (a data set)
   and over the whole report. Goal: at most 5 % per family under the null.
2. **The promised power** at the seeds the report computes for the true sd: the power it
   promises beside the power simulated. Goal: within 5 points.
3. **Seeds needed from a pilot** (``power.seeds_range``): pilots of 3 and 5 seeds at the true
   sd; the recommendation (at the pilot sd's upper confidence limit) and the power it really
   has at the true sd, against the plug-in from the pilot's sd. Goal: mean power >= 0.80.
4. **Planted Table 1** (``claims.judge`` and ``architectures.pairs`` on results folders of the
   shipped paper_table1 space): every variant's true mean the paper's Table 1 number, a trial
   sd of 1.5 points, 5 and 10 seeds, CREMA-D and Kinetics-Sounds. Goal: where the true effect is
   at least twice the margin, ``no effect`` in at most 5 % of studies.
5. **The average over data sets** (``claims.pooled``): 2 and 3 data sets, true effects
   1 + τ·z (τ 0, 1, 2), 5 seeds, per-seed sd 1.5; coverage of the average of the data sets'
   true effects, beside the z random-effects interval the report used to print. Goal: >= 0.93.
6. **Heteroscedastic data sets** (``sensitivity.analyse``): four levels with no true
   difference, a seed sd of 0.5 points on one data set and 3 on the other; the simple
   effects' false positives per contrast. Goal: at most 0.06 on both.
7. **The sequential design** (``--sequential``, bench/sequential_calibration.py): studies that
   grow by looks (3, 5, 10, 20 seeds, or a look after every seed, a budget of 20) until their
   claims are decided, under the null, at the margin and at twice it, one and three data sets:
   both family-wise false rates, power and mean seeds beside the fixed design at the budget.

    python bench/verdict_calibration.py                   # everything (a few minutes)
    python bench/verdict_calibration.py --only table1 pooled --studies 200
    python bench/verdict_calibration.py --study results/rotation_ablation/<timestamp>/

The built-in seed sds (``SEED_SD``) are the per-seed sds of each claim's differences in the
default study (rotation_ablation, synthetic data, 5 seeds), measured with ``--study``; a
``--study`` folder (say, one on a real data set) replaces them. Scenarios 4 and 6 write their
results folders with the test suite's writer (tests/analysis/studies.py), in the format
study/run.py writes, then redraw the accuracies of the same trials for each simulated study.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import architectures, claims, sensitivity  # noqa: E402
from analysis import declarations as declarations_  # noqa: E402
from analysis import power as planning  # noqa: E402
from analysis.paper import PAPER_TABLE1, paper_name, variant_values  # noqa: E402
from analysis.results import Results, load  # noqa: E402
from analysis.stats import ALPHA  # noqa: E402
from bench import sequential_calibration  # noqa: E402

# Per claim: the sd over seeds of its per-seed differences in the default study (synthetic data,
# 5 seeds, `python bench/verdict_calibration.py --study DIR` prints them).
SEED_SD: dict[int, float] = {1: 0.111, 2: 0.108, 3: 0.043, 4: 0.031, 5: 0.795, 6: 0.320}
TRUTHS = {"null": 0.0, "small (0.5 margin)": 0.5, "margin-sized (1 margin)": 1.0}
SEEDS = (3, 5, 10)
DATASETS = (1, 3)
SCENARIOS = ("shares", "power", "pilot", "table1", "pooled", "hetero")
TRIAL_SD = 1.5  # a real data set's seed sd of one accuracy, points
HETERO_SD = {"cremad": 3.0, "kinetics_sounds": 0.5}


def measured_sd(folder: Path) -> dict[int, float]:
    """Each claim's sd of per-seed differences in a results folder (pooled over data sets)."""
    out = {}
    for j in claims.judge(load([folder])):
        if j.judged:
            out.setdefault(j.claim.number, []).append(float(j.diffs.std(ddof=1)))
    return {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in out.items()}


def _ok(good: bool) -> str:
    return "ok" if good else "NO"


# -- 1. verdict shares -----------------------------------------------------------------------

def simulate(effects: dict[int, float], n: int, datasets: int, sd: dict[int, float],
             sims: int, rng: np.random.Generator,
             family: str = declarations_.DEFAULT_FAMILY) -> tuple[pd.DataFrame, float, float]:
    """``sims`` simulated studies, each claim's true effect ``effects[claim]`` margins on its
    claimed side: the share of each verdict per claim, the share of declared families with a
    false ``reproduced`` or ``contradicted`` (one where the truth is 0, or the wrong side), and
    the share of studies with one anywhere."""
    counts: Counter = Counter()
    false_family = false_study = 0
    families = datasets if family == "dataset" else 1
    for _ in range(sims):
        family_list = []
        for d in range(datasets):
            for c in claims.CLAIMS:
                x = rng.normal(c.sign * effects[c.number] * declarations_.MARGINS[c.number],
                               sd[c.number], n)
                family_list.append(claims.Judgement(c, f"d{d}", claims.INCONCLUSIVE,
                                                    diffs=pd.Series(x)))
        wrong: set[str] = set()
        for j in claims.decide(family_list, plan=False, family=family):
            counts[(j.claim.number, j.verdict)] += 1
            decided = j.verdict in (claims.REPRODUCED, claims.CONTRADICTED)
            if decided and (effects[j.claim.number] == 0 or j.verdict == claims.CONTRADICTED):
                wrong.add(j.dataset if family == "dataset" else "")
        false_family += len(wrong)
        false_study += bool(wrong)
    shares = pd.DataFrame([{"claim": c, "verdict": v, "share": k / (sims * datasets)}
                           for (c, v), k in counts.items()])
    return shares, false_family / (sims * families), false_study / sims


def verdict_shares(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for truth, effect in TRUTHS.items():
        for n in SEEDS:
            for k in DATASETS:
                shares, per_family, per_study = simulate(
                    {c.number: effect for c in claims.CLAIMS}, n, k, sd, sims, rng)
                share = shares.groupby("verdict")["share"].sum() / len(claims.CLAIMS)
                row = {"truth": truth, "seeds": n, "data sets": k}
                row.update({name: f"{share.get(name, 0.0):.3f}" for name in claims.VERDICTS[:4]})
                row["false, per family (a data set)"] = f"{per_family:.3f}"
                row["false, any in the report"] = f"{per_study:.3f}"
                row["goal <= 0.05 per family"] = _ok(per_family <= 0.05) if effect == 0 else ""
                rows.append(row)
    return pd.DataFrame(rows)


# -- 2. the promised power -------------------------------------------------------------------

def promised_power(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per claim, one data set (a family of six): the seeds at which the report's power
    computation promises 80 % at the true sd (``power.seeds_needed``) and the power promised
    there, then the simulated rates of ``reproduced`` at a margin-sized effect (the other
    claims null) and of ``no effect`` at none (the other claims at their margin): the cases
    where Holm's later steps add nothing, so the promise is what a user can count on."""
    rows = []
    m = len(claims.CLAIMS)
    for c in claims.CLAIMS:
        n, detect, null = planning.seeds_needed(sd[c.number], declarations_.MARGINS[c.number], m)
        got = {}
        for truth, own, others, verdict in (("margin", 1.0, 0.0, claims.REPRODUCED),
                                            ("null", 0.0, 1.0, claims.NO_EFFECT)):
            effects = {k.number: (own if k.number == c.number else others)
                       for k in claims.CLAIMS}
            shares, _, _ = simulate(effects, n, 1, sd, sims, rng)
            mine = shares[(shares["claim"] == c.number) & (shares["verdict"] == verdict)]
            got[truth] = float(mine["share"].sum())
        rows.append({"claim": c.number, "seed sd": sd[c.number],
                     "margin": declarations_.MARGINS[c.number], "seeds at the true sd": n,
                     "promised: reproduced at the margin": f"{detect:.3f}",
                     "simulated": f"{got['margin']:.3f}",
                     "promised: no effect at the null": f"{null:.3f}",
                     "simulated ": f"{got['null']:.3f}",
                     "within 5 points": _ok(abs(got["margin"] - detect) <= 0.05
                                            and abs(got["null"] - null) <= 0.05)})
    return pd.DataFrame(rows)


# -- 3. seeds needed from a pilot ------------------------------------------------------------

def pilot_power(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    """Pilots of 3 and 5 seeds at a claim's true sd: the seeds the report recommends (the
    upper end of ``power.seeds_range``) and, at the true sd, the power they really give (the
    smaller of the power to find an effect of the margin and to show no effect at none,
    Bonferroni over a family of six); beside it the plug-in from the pilot's sd that the
    report used to print."""
    m = len(claims.CLAIMS)
    cases = [(f"({c})", sd[c], declarations_.MARGINS[c]) for c in (1, 5, 6)]
    rows = []
    for name, true_sd, margin in cases:
        for pilot in (3, 5):
            rec, plug, real, real_plug = [], [], [], []
            for _ in range(sims):
                s = float(np.std(rng.normal(0, true_sd, pilot), ddof=1))
                low, high, *_ = planning.seeds_range(s, pilot, margin, m)
                for n, out, power in ((high, rec, real), (low, plug, real_plug)):
                    n = n or planning.MOST_SEEDS
                    out.append(n)
                    detect, null = planning.powers(true_sd, margin, ALPHA / m, np.array([n]))
                    power.append(float(min(detect[0], null[0])))
            rows.append({
                "claim (true sd, margin)": f"{name} ({true_sd:.3g}, {margin:g})",
                "pilot seeds": pilot,
                "seeds at the true sd": planning.seeds_needed(true_sd, margin, m)[0],
                "recommended: median [5 %, 95 %]":
                    f"{np.median(rec):.0f} [{np.percentile(rec, 5):.0f}, "
                    f"{np.percentile(rec, 95):.0f}]",
                "real power: mean": f"{np.mean(real):.3f}",
                "share below 0.8": f"{np.mean(np.array(real) < 0.8):.3f}",
                "plug-in (before): mean power": f"{np.mean(real_plug):.3f}",
                "plug-in below 0.8": f"{np.mean(np.array(real_plug) < 0.8):.3f}",
                "goal mean >= 0.80": _ok(np.mean(real) >= 0.80)})
    return pd.DataFrame(rows)


# -- 4. planted Table 1 ----------------------------------------------------------------------

def _paper_means(res: Results) -> np.ndarray:
    """Each trial's true headline accuracy: the paper's Table 1 number for its variant's row
    (Concat's where the paper has no row, as the planted writer does)."""
    out = []
    for row in res.trials.to_dict("records"):
        paper = PAPER_TABLE1[row["dataset"]]
        name = paper_name(variant_values(res, int(row["study"]), str(row["variant"])))
        out.append(paper.get(name, paper["Concat"]))
    return np.array(out)


def planted_table1(sims: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claim 6 and the per-architecture pairs on planted Table 1 studies (module docstring):
    the share of each verdict per data set and per pair over ``sims`` studies."""
    from tests.analysis.studies import write_table1

    claim_rows, pair_rows = [], []
    for n in (5, 10):
        with tempfile.TemporaryDirectory() as tmp:
            res = load(write_table1(Path(tmp), seeds=n, sd=TRIAL_SD))
            truth = _paper_means(res)
            six: Counter = Counter()
            pairs: Counter = Counter()
            for _ in range(sims):
                res.trials["acc"] = truth + rng.normal(0, TRIAL_SD, len(truth))
                for j in claims.judge(res, plan=False):
                    if j.claim.number == 6:
                        six[(j.dataset, j.verdict)] += 1
                for r in architectures.pairs(res).to_dict("records"):
                    pairs[(r["dataset"], r["paper_row"], r["verdict"])] += 1
                    pairs[(r["dataset"], r["paper_row"], "smaller")] += \
                        architectures.smaller_than_paper(r)
        for ds in ("cremad", "kinetics_sounds"):
            paper = PAPER_TABLE1[ds]
            gains = [paper[f"{a} + RollingQ"] - paper[a]
                     for a in ("Vanilla MT", "Vanilla MT*", "MMML")]
            effect = float(np.mean(gains))
            share = {v: six[(ds, v)] / sims for v in claims.VERDICTS[:4]}
            claim_rows.append({
                "data set": ds, "seeds": n, "true average effect": f"{effect:+.2f}",
                "margin": declarations_.MARGINS[6], **{v: f"{s:.3f}" for v, s in share.items()},
                "goal: no effect <= 0.05": _ok(share[claims.NO_EFFECT] <= 0.05)
                if effect >= 2 * declarations_.MARGINS[6] else "(under 2 margins)"})
            for a in ("Vanilla MT", "Vanilla MT*", "MMML"):
                row = f"{a} + RollingQ vs {a}"
                gain = paper[f"{a} + RollingQ"] - paper[a]
                share = {v: pairs[(ds, row, v)] / sims for v in claims.VERDICTS[:4]}
                pair_rows.append({
                    "data set": ds, "seeds": n, "pair": row, "true gain": f"{gain:+.1f}",
                    **{v: f"{s:.3f}" for v, s in share.items()},
                    "smaller than the paper's": f"{pairs[(ds, row, 'smaller')] / sims:.3f}",
                    "goal: no effect <= 0.05": _ok(share[claims.NO_EFFECT] <= 0.05)
                    if gain >= 2 * declarations_.MARGINS[6] else "(under 2 margins)"})
    return pd.DataFrame(claim_rows), pd.DataFrame(pair_rows)


# -- 5. the average over data sets -----------------------------------------------------------

def pooled_coverage(sims: int, rng: np.random.Generator) -> pd.DataFrame:
    """Coverage of the average of the data sets' true effects (module docstring) by the
    report's interval, and by the z random-effects interval (Paule–Mandel, statsmodels
    ``combine_effects``) it printed before, of that average and of the mean effect of data
    sets in general (1, what a random-effects interval claims to cover)."""
    from statsmodels.stats.meta_analysis import combine_effects

    rows = []
    for k in (2, 3):
        for tau in (0.0, 1.0, 2.0):
            ours = before = general = 0
            for _ in range(sims):
                truth = 1.0 + tau * rng.standard_normal(k)
                family = [claims.Judgement(claims.CLAIMS[5], f"d{i}", claims.INCONCLUSIVE,
                                           diffs=pd.Series(rng.normal(truth[i], TRIAL_SD, 5)))
                          for i in range(k)]
                r = claims.pooled(claims.decide(family, plan=False)).iloc[0]
                ours += r["low"] <= truth.mean() <= r["high"]
                eff = np.array([j.effect for j in family])
                var = np.array([j.sd ** 2 / j.n for j in family])
                with np.errstate(divide="ignore", invalid="ignore"):
                    low, high = combine_effects(eff, var, method_re="iterated",
                                                use_t=False).conf_int(use_t=False)[1]
                before += low <= truth.mean() <= high
                general += low <= 1.0 <= high
            rows.append({"data sets": k, "τ": tau, "coverage (Welch–Satterthwaite t)":
                         f"{ours / sims:.3f}", "z random effects (before)":
                         f"{before / sims:.3f}", "before, of the mean of data sets in general":
                         f"{general / sims:.3f}", "goal >= 0.93": _ok(ours / sims >= 0.93)})
    return pd.DataFrame(rows)


# -- 6. heteroscedastic data sets ------------------------------------------------------------

def heteroscedastic(sims: int, rng: np.random.Generator) -> pd.DataFrame:
    """Simple effects of a four-level parameter with no true effect, per data set (module
    docstring): the share of contrasts with p < 0.05, raw and after Holm."""
    from tests.analysis.studies import write_study

    search = {"model.fusion_layers": {"role": "scientific", "type": "choice",
                                      "values": [1, 2, 3, 4]}}
    with tempfile.TemporaryDirectory() as tmp:
        folders = [write_study(Path(tmp) / ds, name="layers", search=search,
                               seeds=(0, 1, 2, 3, 4), effect=lambda p: 0.6, rng_seed=i,
                               fixed={"model.fusion": "attn", "data.name": ds})
                   for i, ds in enumerate(HETERO_SD)]
        res = load(folders)
    sd = res.trials["dataset"].map(HETERO_SD).to_numpy()
    raw: Counter = Counter()
    adjusted: Counter = Counter()
    total: Counter = Counter()
    for _ in range(sims):
        res.trials["acc"] = 60.0 + rng.normal(0, 1, len(sd)) * sd
        simple = sensitivity.analyse(res).simple
        for r in simple.to_dict("records"):
            total[r["dataset"]] += 1
            raw[r["dataset"]] += r["p"] < 0.05
            adjusted[r["dataset"]] += r["p_holm"] < 0.05
    return pd.DataFrame([{"data set": ds, "seed sd (points)": s,
                          "false positives per contrast": f"{raw[ds] / total[ds]:.3f}",
                          "after Holm": f"{adjusted[ds] / total[ds]:.3f}",
                          "goal <= 0.06": _ok(raw[ds] / total[ds] <= 0.06)}
                         for ds, s in HETERO_SD.items()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, help="take the seed sds from this results folder")
    ap.add_argument("--sims", type=int, default=1000,
                    help="simulated studies per row of scenarios 1-3 and 5")
    ap.add_argument("--studies", type=int, default=200,
                    help="simulated studies per row of scenarios 4 and 6 (the full analysis)")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sequential", action="store_true",
                    help="only the sequential design against the fixed one (bench/"
                         "sequential_calibration.py), --sims studies a row")
    args = ap.parse_args(argv)
    sd = dict(SEED_SD)
    if args.study:
        measured = measured_sd(args.study)
        sd.update(measured)
        print("seed sd of each claim's per-seed differences in", args.study)
        print("  " + ", ".join(f"({k}) {v:.4g}" + ("" if k in measured else " (built-in: not "
                                                     "judged in that study)")
                               for k, v in sorted(sd.items())))
    rng = np.random.default_rng(args.seed)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        if args.sequential:
            print(f"\n7. The sequential design ({args.sims} studies a row; a budget of "
                  f"{sequential_calibration.BUDGET} seeds, O'Brien–Fleming-type spending, "
                  f"Holm's α recycling within a data set; goal: both false rates <= 0.05 "
                  f"within 2 Monte-Carlo se, power within 3 points of the fixed design, fewer "
                  f"seeds at twice the margin):")
            print(sequential_calibration.table(sd, args.sims, rng).to_string(index=False))
            return 0
        if "shares" in args.only:
            print(f"\n1. Verdict shares ({args.sims} simulated studies a row; Holm over the "
                  f"declared family: the six claims on a data set):")
            print(verdict_shares(sd, args.sims, rng).to_string(index=False))
        if "power" in args.only:
            print("\n2. The power computation (one data set, a family of six; goal: within 5 "
                  "points of the promise):")
            print(promised_power(sd, args.sims, rng).to_string(index=False))
        if "pilot" in args.only:
            print(f"\n3. Seeds needed from a pilot ({args.sims} pilots a row; goal: mean real "
                  f"power >= 0.80 at the recommendation):")
            print(pilot_power(sd, args.sims, rng).to_string(index=False))
        if "table1" in args.only:
            six, pairs = planted_table1(args.studies, rng)
            print(f"\n4. Planted Table 1, claim 6 ({args.studies} studies a row; the paper's "
                  f"means, trial sd {TRIAL_SD} points):")
            print(six.to_string(index=False))
            print("\n   and RollingQ per architecture:")
            print(pairs.to_string(index=False))
        if "pooled" in args.only:
            print(f"\n5. The average over data sets ({args.sims} studies a row; 5 seeds, "
                  f"per-seed sd {TRIAL_SD}):")
            print(pooled_coverage(args.sims, rng).to_string(index=False))
        if "hetero" in args.only:
            print(f"\n6. Heteroscedastic data sets ({args.studies} studies; four levels, no true "
                  f"effect, 5 seeds):")
            print(heteroscedastic(args.studies, rng).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
