"""The paper's claims on this study (``analysis/claims.py``): the verdicts, their evidence, the
per-sample test-set analysis, RollingQ per architecture, the average over data sets and what
the lost trials could change."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import architectures, claims, outcomes, per_sample, plots, power, worst_case
from analysis import declarations as declarations_
from analysis.claims import SYNTHETIC
from analysis.format import interval, p_text
from analysis.report import claims_text
from analysis.report.blocks import Heading, Para, Table
from analysis.report.captions import text
from analysis.report.context import Context
from analysis.results import level_str


def build(ctx: Context) -> None:
    res = ctx.res
    judgements = claims.judge(res)
    ctx.record(judgements=judgements)
    _verdicts(ctx, judgements)
    per_pair = _per_architecture(ctx)
    if SYNTHETIC in res.datasets:
        ctx.add(Para(text("claims.synthetic")))
    _lost_trials(ctx, judgements)
    fav = outcomes.favoured_modalities(res.trials)
    ctx.record(favoured=fav)
    ctx.add(Para(text("claims.favoured", favoured="; ".join(
        f"{ds}: `{m}` ({how})" if m else f"{ds}: none ({how})" for ds, (m, how) in fav.items()))))
    _test_set(ctx)
    _across_datasets(ctx, judgements)
    grow = claims_text.grow_commands(res, judgements)
    for sentence in claims_text.cannot_judge(judgements) + grow:
        ctx.add(Para(sentence))
    if grow:
        ctx.add(Para(text("claims.grow_caution")))
    _grown(ctx)
    for sentence in claims_text.regrouped(res, judgements):
        ctx.add(Para(sentence))
    ctx.figure("air_convergence", plots.air_convergence(res), text("claims.air_convergence"))
    _summary(ctx, judgements)
    ctx.summary.extend(per_pair)


def _grown(ctx: Context) -> None:
    """A study grown by seeds: its verdicts are read again, with no error guarantee; a
    sequential study's verdicts are its looks'."""
    res = ctx.res
    for d, design in zip(res.dirs, res.designs, strict=True):
        if design.sequential:
            ctx.add(Para(text("claims.sequential", folder=d)))
    grown = {str(d): seeds for d, seeds, design in zip(res.dirs, res.growths, res.designs,
                                                        strict=True)
             if len(seeds) > 1 and not design.sequential}
    ctx.record(grown=grown)
    for folder, seeds in grown.items():
        history = ", then ".join(", ".join(map(str, s)) for s in seeds)
        ctx.add(Para(text("claims.grown", folder=folder, history=history)))


def _verdicts(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """The forest plot, how the claims are judged, the verdicts and their evidence."""
    res = ctx.res
    family, _ = declarations_.declarations(res)
    ctx.figure("claims_forest", plots.claims_forest(judgements), text("claims.forest"))
    ctx.add(Para(text("claims.method", family=family, family_text=declarations_.FAMILIES[family],
                      ucl=100 * power.SD_UCL)),
            Table(claims_text.table(res, judgements), text("claims.table")),
            Table(claims_text.evidence_table(res, judgements), text("claims.evidence")))


def _lost_trials(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """The trials each arm lost, and the verdicts at the lost trials' worst values."""
    res = ctx.res
    lost = claims.failures(res)
    ctx.record(lost=lost)
    if len(lost) and (lost["on_lost"] + lost["off_lost"]).sum():
        ctx.add(Table(_failures(lost), text("claims.lost")))
        worst = worst_case.worst_case(res, judgements)
        ctx.record(worst_case=worst)
        line = claims_text.worst_case_text(worst)
        if line:
            ctx.add(Para(line))


def _test_set(ctx: Context) -> None:
    """Claim (6) from the test set's per-sample predictions."""
    res = ctx.res
    tested = per_sample.test_set(res)
    ctx.record(test_set=tested)
    if len(tested) and (tested["pairs"] > 0).any():
        ctx.add(Table(_test_set_strings(tested),
                      text("claims.test_set", resamples=per_sample.BOOTSTRAP_RESAMPLES)))


def _across_datasets(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """Each claim averaged over several data sets, and whether it differs between them."""
    across = claims.pooled(judgements)
    ctx.record(pooled=across)
    if len(across):
        ctx.add(Table(_pooled_strings(across), text("claims.pooled")))
        for sentence in claims_text.pooled_text(across, judgements):
            ctx.add(Para(sentence))


def _summary(ctx: Context, judgements: list[claims.Judgement]) -> None:
    """A line of "What the study says" per data set: its verdicts and their Holm family."""
    res = ctx.res
    looked = {ds for i, d in enumerate(res.designs) if d.sequential
              for ds in res.trials.loc[res.trials["study"] == i, "dataset"]}
    for ds in res.datasets:
        if ds in looked:  # its verdicts are the sequential design's (that section's summary)
            continue
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
    ctx.record(pairs=t)
    if not len(t):
        return []
    family, _ = declarations_.declarations(ctx.res)
    margin = sorted({f"±{m:g}" for m in t["margin"]})
    ctx.add(Heading(3, "RollingQ per architecture"),
            Table(_architecture_strings(t), text(
                "claims.per_architecture", margins=", ".join(margin),
                family_text=declarations_.FAMILIES[family].replace("claims", "pairs"))))
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
            "P(on > off) [95% CI]": "-" if pd.isna(r["pi_low"]) else
            f"{r['pi']:.2f} [{r['pi_low']:.2f}, {r['pi_high']:.2f}]",
            "seeds improved [95% CI]": f"{r['improved']}/{r['n']} "
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
