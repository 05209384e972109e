"""The paper's claims on this study (``analysis/claims.py``): the verdicts, their evidence, the
per-sample test-set analysis, RollingQ per architecture, the average over data sets and what
the lost trials could change."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from analysis import (
    architectures,
    claims,
    outcomes,
    per_sample,
    plots,
    power,
    worst_case,
)
from analysis import declarations as declarations_
from analysis.claims import SYNTHETIC
from analysis.format import interval, p_text
from analysis.report import claims_text
from analysis.report.blocks import Heading, Para, Table
from analysis.report.context import Context
from analysis.results import level_str

log = logging.getLogger(__name__)


def build(ctx: Context) -> None:
    res = ctx.res
    judgements = claims.judge(res)
    _verdicts(ctx, judgements)
    per_pair = _per_architecture(ctx)
    if SYNTHETIC in res.datasets:
        ctx.add(Para("The synthetic data set is built to show RollingQ's mechanism, so "
                     "its verdicts are mechanism checks, not evidence about the paper's "
                     "data sets. Claim 2 is a manipulation check everywhere: the trigger "
                     "rotates until |AIR| ≤ β."))
    _lost_trials(ctx, judgements)
    fav = outcomes.favoured_modalities(res.trials)
    ctx.add(Para("Favoured modality (declared, never chosen from the shares under test): "
                 + "; ".join(f"{ds}: `{m}` ({how})" if m else f"{ds}: none ({how})"
                             for ds, (m, how) in fav.items()) + "."))
    _test_set(ctx)
    _across_datasets(ctx, judgements)
    for sentence in (claims_text.cannot_judge(judgements)
                     + claims_text.grow_commands(res, judgements)
                     + claims_text.regrouped(res, judgements)):
        ctx.add(Para(sentence))
    ctx.figure("air_convergence", plots.air_convergence(res),
               "Validation |AIR| over epochs, RollingQ on vs off (each arm averaged "
               "within a seed, then the mean and 95 % t-band over seeds), β dashed: "
               "claims 1 and 2, a column per data set.")
    _summary(ctx, judgements)
    ctx.summary.extend(per_pair)


def _verdicts(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """The forest plot, how the claims are judged, the verdicts and their evidence."""
    res = ctx.res
    family, _ = declarations_.declarations(res)
    ctx.figure("claims_forest", plots.claims_forest(judgements),
               "Each claim's effect per data set in units of its equivalence margin "
               "(the claimed direction to the right), with its interval at its Holm level "
               "(the one the verdict reads); 0 solid, the margin ±1 dashed; the colour "
               "is the verdict.")
    ctx.add(Para(
        f"Each claim of the paper tested on this study's trials: RollingQ on (enabled, a "
        f"rotation allowed) against off (vanilla), paired by seed within each configuration "
        f"that has both arms, the per-seed differences averaged over configurations "
        f"(claim 1: the Vanilla MT trials' growth of |AIR| from initialisation). The Holm "
        f"family is declared by the study (`claims.family: {family}`: "
        f"{declarations_.FAMILIES[family]}) and named beside each verdict: p (Holm) is "
        f"Holm-adjusted over it, and each effect's interval is at its Holm level "
        f"(0.05 / (m − k + 1) for the k-th smallest of the family's m p-values while Holm "
        f"rejects, else the level where it stopped), so it excludes 0 exactly when the "
        f"verdict does; the simultaneous interval over the family (Bonferroni, level "
        f"1 − 0.05/m) is in the evidence table. p is the raw two-sided one-sample t-test; "
        f"beside it the exact sign-flip p, which needs no normality (†: with n seeds its "
        f"smallest value 2/2ⁿ is above the claim's Holm level, so only the t-test's normal "
        f"model can decide the claim). Verdict: "
        f"**reproduced** / **contradicted** when p (Holm) < 0.05 on the claimed / the "
        f"other side; **no effect** when the equivalence test (TOST) against the margin "
        f"(the smallest effect of interest, declared independently of the paper) "
        f"has Holm p < 0.05 over the family's equivalence tests; **inconclusive** "
        f"(we cannot tell yet) otherwise, with the seeds needed as a range: the verdict is "
        f"reached with 80 % power (at an effect of the margin, and at no effect) at the "
        f"observed seed sd (the lower end) and at its {100 * power.SD_UCL:.0f} % upper "
        f"confidence limit (the recommendation); **deterministic: no test** when every seed "
        f"gives the same difference."),
            Table(claims_text.table(res, judgements),
                  "The paper's claims: the effect (on − off, or the vanilla growth) with "
                  "its interval at its Holm level, the raw t and sign-flip p, the Holm p "
                  "and its family, the equivalence margin (the default in "
                  "docs/report.md, or the one the study's spec declares) and the TOST's "
                  "Holm p, the verdict, and the paper's figure (a reference, not a "
                  "margin)."),
            Table(claims_text.evidence_table(res, judgements),
                  "What each verdict rests on: the per-seed differences, the raw 95 % "
                  "t-interval, the simultaneous interval over the family, the "
                  "standardised effect d_z, and the trials used per arm "
                  "of those the study ran for it."))


def _lost_trials(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """The trials each arm lost, and the verdicts at the lost trials' worst values."""
    res = ctx.res
    lost = claims.failures(res)
    if len(lost) and (lost["on_lost"] + lost["off_lost"]).sum():
        ctx.add(Table(_failures(lost),
                      "Trials lost by arm (diverged, errored or incomplete) and the Fisher "
                      "exact test of losing a trial by arm: a method that fails more "
                      "often is judged on its survivors."))
        line = claims_text.worst_case_text(worst_case.worst_case(res, judgements))
        if line:
            ctx.add(Para(line))


def _test_set(ctx: Context) -> None:
    """Claim (6) from the test set's per-sample predictions."""
    res = ctx.res
    tested = per_sample.test_set(res)
    if len(tested) and (tested["pairs"] > 0).any():
        ctx.add(Table(_test_set_strings(tested),
                      "Claim (6) from the test set's per-sample predictions, beside the "
                      "seed-level test above: the same on/off pairs, each test sample's "
                      "accuracy difference averaged as the claim averages (its mean is "
                      "the claim's effect), a paired bootstrap over test samples (BCa, "
                      f"{per_sample.BOOTSTRAP_RESAMPLES} resamples, 95 %), and per pair "
                      "McNemar's test (on-only / off-only correct samples; exact under 25 "
                      "discordant) with Holm over the data set's pairs. Given the trained "
                      "models this is the test set's sampling uncertainty only; the "
                      "verdict rests on the seeds, as the claim is about training runs."))


def _across_datasets(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """Each claim averaged over several data sets, and whether it differs between them."""
    across = claims.pooled(judgements)
    if len(across):
        ctx.add(Table(_pooled_strings(across),
                      "Each claim on several data sets: the average over these data sets "
                      "(the unweighted mean of their effects, a t interval with "
                      "Welch–Satterthwaite df: the seed sds are estimated, and the data "
                      "sets are these, not a sample of data sets), a description with no p "
                      "and outside the Holm family; and Welch's heteroscedastic test of "
                      "whether the effect differs between the data sets."))
        for sentence in claims_text.pooled_text(across, judgements):
            ctx.add(Para(sentence))


def _summary(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """A line of "What the study says" per data set: its verdicts and their Holm family."""
    res = ctx.res
    for ds in res.datasets:
        here = [j for j in judgements if j.dataset == ds]
        verdicts = ", ".join(f"({j.claim.number}) {j.verdict}" for j in here)
        check = " (mechanism checks)" if ds == SYNTHETIC else ""
        names = sorted({j.family_name for j in here if j.family_name})
        ctx.summary.append(f"The paper's claims{' on ' + ds if len(res.datasets) > 1 else ''}"
                           f"{check}: {verdicts}"
                           + (f"; Holm over {' and '.join(names)}" if names else "") + ".")


def _per_architecture(ctx: Context) -> list[str]:
    """RollingQ per architecture: each on/off pair of the study on each data set; returns
    the summary's lines."""
    t = architectures.pairs(ctx.res)
    if not len(t):
        return []
    family, _ = declarations_.declarations(ctx.res)
    margin = sorted({f"±{m:g}" for m in t["margin"]})
    ctx.add(Heading(3, "RollingQ per architecture"),
            Table(_architecture_strings(t),
                  f"RollingQ's effect on the headline accuracy per pair (a RollingQ "
                  f"variant against the same configuration without it, the paper's Table "
                  f"1 rows), per data set: the paired difference over seeds with its 95 % "
                  f"t-interval, the raw t and exact sign-flip p (†: it cannot reach the "
                  f"pair's Holm level with these seeds), Holm over "
                  f"{declarations_.FAMILIES[family].replace('claims', 'pairs')} (the declared "
                  f"family), the TOST against claim 6's margin ({', '.join(margin)}), the "
                  f"verdict as the claims decide it; the paper's gain for the pair (one "
                  f"seed each, best test epoch) with a one-sided test that ours is smaller "
                  f"(Holm over the same pairs); the share of seeds where RollingQ wins "
                  f"(a tie is no win) with its Clopper–Pearson interval; the 95 % "
                  f"prediction interval of one seed's paper-style difference, against the "
                  f"paper's single-seed gain; and the test set's paired BCa bootstrap "
                  f"with McNemar per seed where the trials saved predictions. The claims "
                  f"above average these pairs and stay the headline."))
    lines = []
    for ds, g in t.groupby("dataset", sort=False):
        # the paper's row names a pair unless several pairs share it (a rotation ablation)
        named = g["paper_row"].ne("") & ~g["paper_row"].duplicated(keep=False)
        g = g.assign(label=np.where(named, g["paper_row"].str.split(" vs ").str[0],
                                    "`" + g["on"] + "`"))
        parts = [f"{r['label']} {r['effect']:+.2f} "
                 f"({r['verdict']}" + (", smaller than the paper's"
                                        if architectures.smaller_than_paper(r) else "")
                 + ")" for r in g.to_dict("records")]
        lines.append(f"RollingQ per architecture"
                     f"{' on ' + str(ds) if len(ctx.res.datasets) > 1 else ''}: "
                     + "; ".join(parts) + ".")
    return lines


def _failures(lost: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"data set": r["dataset"],
                          "RollingQ on: lost of trials": f"{r['on_lost']} of {r['on_trials']}",
                          "off: lost of trials": f"{r['off_lost']} of {r['off_trials']}",
                          "Fisher p": p_text(r["p"])} for r in lost.to_dict("records")])


def _test_set_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        tests = "; ".join(f"seed {level_str(m['seed'])}: {m['on_only']}/{m['off_only']}, p "
                          f"{p_text(m['p'])} (Holm {p_text(m['p_holm'])})" for m in r["mcnemar"])
        rows.append({"data set": r["dataset"], "pairs": str(r["pairs"]),
                     "test samples": str(r["samples"]),
                     "effect (points) [BCa 95% CI]": r["reason"] or interval(
                         r["effect"], r["low"], r["high"], 2),
                     "McNemar per pair (on-only/off-only)": tests or (
                         "- (each pair averages several trials of an arm)" if r["pairs"]
                         else "-"),
                     "pairs significant (Holm)": r["significant"] or "-"})
    return pd.DataFrame(rows)


def _architecture_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        verdict = f"**{r['verdict']}**"
        if architectures.smaller_than_paper(r):
            verdict += ", smaller than the paper's"
        tested = r["test_set"]
        test_set = "-"
        if tested["pairs"]:
            test_set = interval(tested["effect"], tested["low"], tested["high"], 2)
            if tested["significant"]:
                test_set += f"; McNemar: {tested['significant']}"
        gain = r["paper_gain"]
        predicted = "-" if pd.isna(r["predict_low"]) else (
            f"[{r['predict_low']:+.2f}, {r['predict_high']:+.2f}]"
            + ("" if pd.isna(gain) else
               " (holds the paper's)" if r["paper_in_prediction"] else " (**not** the paper's)"))
        rows.append({
            "data set": r["dataset"], "pair (on − off)": r["pair"],
            "paper's rows": r["paper_row"] or "-", "seeds": str(r["n"]),
            "effect (points) [95% CI]": interval(r["effect"], r["low"], r["high"], 2),
            "p": p_text(r["p"]) or "-",
            "sign-flip p": "-" if pd.isna(r["sign_flip_p"]) else
            p_text(r["sign_flip_p"]) + (" †" if r["sign_flip_short"] else ""),
            "p (Holm)": p_text(r["p_holm"]) or "-",
            "Holm family": r["family"] if isinstance(r["family"], str) else "-",
            "TOST p (Holm)": p_text(r["tost_holm"]) or "-", "verdict": verdict,
            "paper's gain": "-" if pd.isna(gain) else f"{gain:+.1f}",
            "smaller than the paper's: p (Holm)": p_text(r["smaller_holm"]) or "-",
            "P(improvement) [95% CI]": f"{r['improved']}/{r['n']} "
            f"[{r['improve_low']:.2f}, {r['improve_high']:.2f}]",
            "one seed of ours, paper-style [95% PI]": predicted,
            "test set: BCa 95% CI": test_set})
    return pd.DataFrame(rows)


def _pooled_strings(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"claim": f"({r['claim']})", "data sets": r["datasets"],
                          "verdicts": r["verdicts"],
                          "the average over these data sets [95% CI]": interval(
                              r["effect"], r["low"], r["high"], 3),
                          "df (Welch–Satterthwaite)": f"{r['df']:.1f}",
                          "differs between data sets: Welch F (p)":
                              f"{r['differ_f']:.2f} ({p_text(r['differ_p'])})"}
                         for r in t.to_dict("records")])
