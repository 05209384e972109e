"""The paper's claims in words, for the report: each verdict with what it needs, the claims
table and its evidence, the commands that grow a study, the average over data sets, what the
lost trials could change, what cannot be judged, and the verdicts another grouping of folders
changes. The numbers are ``analysis.claims``'s."""

from __future__ import annotations

import pandas as pd

from analysis.claims import (
    CANNOT,
    CONTRADICTED,
    INCONCLUSIVE,
    NO_EFFECT,
    PAPER_FIGURES,
    REPRODUCED,
    Judgement,
    judge,
)
from analysis.format import p_or_dash, p_rel, signed
from analysis.power import MOST_SEEDS, SD_UCL
from analysis.results import Results, level_str
from analysis.stats import ALPHA


def verdict_text(j: Judgement) -> str:
    text = f"**{j.verdict}**"
    if j.verdict == INCONCLUSIVE and j.seeds_needed:
        span = (f"{j.seeds_low}–{j.seeds_needed}" if j.seeds_low and j.seeds_low < j.seeds_needed
                else f"{j.seeds_needed}")
        text += (f" (needs {j.seeds_needed} seeds; range {span}: {j.seeds_low or '-'} at the "
                 f"observed sd {j.sd:.3g}, {j.seeds_needed} at its {100 * SD_UCL:.0f} % upper "
                 f"confidence limit {j.sd_ucl:.3g}, where the power is {j.power:.2f} at the "
                 f"margin and {j.power_null:.2f} to show no effect)")
    elif j.verdict == INCONCLUSIVE and j.judged:
        text += f" (needs more than {MOST_SEEDS} seeds)"
    elif j.reason:
        text += f" ({j.reason})"
    return text + (f"; {j.label}" if j.label else "")


def sign_flip_text(j: Judgement) -> str:
    """The sign-flip p, with † where it cannot reach the claim's Holm level."""
    if pd.isna(j.sign_flip_p):
        return "-"
    return p_or_dash(j.sign_flip_p) + (" †" if j.sign_flip_short else "")


def table(res: Results, judgements: list[Judgement]) -> pd.DataFrame:
    """The verdicts: a row per claim × data set with the effect and its interval at its Holm
    level, the raw t and sign-flip p, the Holm p and its family, the margin (and where it comes
    from) and the TOST's Holm p, the verdict and the seeds it needs, and the paper's figure."""
    several = len(res.datasets) > 1
    rows = []
    for j in judgements:
        row = {"claim": f"({j.claim.number}) {j.claim.text}"}
        if several:
            row["data set"] = j.dataset
        row.update({
            "claimed sign": "> 0" if j.claim.sign > 0 else "< 0",
            "effect [interval at its Holm level]":
                "-" if not j.n else signed(j.effect) + (
                    f" [{signed(j.holm_low)}, {signed(j.holm_high)}] "
                    f"({100 * (1 - j.holm_level):.1f}%)" if not pd.isna(j.holm_low) else ""),
            "p": p_or_dash(j.p), "sign-flip p": sign_flip_text(j), "p (Holm)": p_or_dash(j.p_holm),
            "Holm family": j.family_name or "-",
            "margin": "-" if pd.isna(j.margin) else f"±{j.margin:g} ({j.margin_source})",
            "TOST p (Holm)": p_or_dash(j.tost_holm),
            "verdict": verdict_text(j),
            "paper": PAPER_FIGURES.get(j.claim.number, {}).get(j.dataset, "-"),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def evidence_table(res: Results, judgements: list[Judgement]) -> pd.DataFrame:
    """What each verdict rests on: the quantity, the per-seed differences, the raw 95 %
    interval, d_z, the test, and the trials used against those expected per arm."""
    several = len(res.datasets) > 1
    simultaneous = "simultaneous interval (Bonferroni over its family)"
    rows = []
    for j in judgements:
        row = {"claim": f"({j.claim.number})"}
        if several:
            row["data set"] = j.dataset
        diffs = ", ".join(f"{level_str(s)}: {signed(v)}" for s, v in j.diffs.items())
        used = "; ".join(f"{arm} {j.used.get(arm, 0)} of {n}" for arm, n in j.expected.items())
        row.update({
            "effect measured": j.claim.quantity, "per-seed differences": diffs or "-",
            "effect [95% CI]": "-" if pd.isna(j.low) else
            f"{signed(j.effect)} [{signed(j.low)}, {signed(j.high)}]",
            simultaneous: "-" if pd.isna(j.sim_low) else
            f"[{signed(j.sim_low)}, {signed(j.sim_high)}] "
            f"({100 * (1 - ALPHA / j.family):.1f}%)",
            "d_z": "-" if pd.isna(j.d_z) else f"{j.d_z:+.2f}",
            "test": j.test + (f"; {j.trend}" if j.trend else "") or "-",
            "trials used (of the arm's)": used or "-"})
        rows.append(row)
    return pd.DataFrame(rows)


def grow_commands(res: Results, judgements: list[Judgement]) -> list[str]:
    """For each inconclusive claim with a seeds-needed figure: a sentence with the exact command
    that grows its study (each grid study holding the claim's data set) to that many seeds;
    an Optuna study cannot grow, and its sentence says so."""
    out = []
    for j in judgements:
        if j.verdict != INCONCLUSIVE or not j.seeds_needed:
            continue
        studies = sorted(res.trials.loc[res.trials["dataset"] == j.dataset, "study"].unique())
        for i in studies:
            design = res.designs[int(i)]
            if design.sequential:  # it grows by its own looks
                continue
            seeds = design.seeds
            new = max(1, j.seeds_needed - len(seeds))
            grown = seeds + list(range(max(seeds) + 1, max(seeds) + 1 + new))
            where = f"{j.dataset}: claim ({j.claim.number}) needs {j.seeds_needed} seeds"
            if design.mode != "grid":
                out.append(f"{where}; its study `{res.dirs[int(i)]}` is an Optuna study, which "
                           f"cannot grow by seeds: run it anew with "
                           f"`--set seeds=[{', '.join(map(str, grown))}]`.")
                continue
            out.append(f"{where}; add them (only the new seeds' trials train) with "
                       f"`python study/run.py --space {design.space} --resume "
                       f"{res.dirs[int(i)]} --set seeds=[{','.join(map(str, grown))}]`.")
    return out


def pooled_text(table: pd.DataFrame, judgements: list[Judgement]) -> list[str]:
    """A sentence per pooled claim, built from its verdicts: which data sets decided it (and
    how) and which cannot tell yet, then the average over these data sets as a description."""
    by = {(j.claim.number, j.dataset): j for j in judgements}
    out = []
    for r in table.to_dict("records"):
        names = r["datasets"].split(", ")
        here = [by[(r["claim"], n)] for n in names]
        decided = [j for j in here if j.verdict in (REPRODUCED, CONTRADICTED, NO_EFFECT)]
        open_ = [j for j in here if j.verdict == INCONCLUSIVE]
        parts = []
        for verdict in (REPRODUCED, CONTRADICTED, NO_EFFECT):
            on = [j.dataset for j in decided if j.verdict == verdict]
            if on:
                parts.append(f"{verdict} on {', '.join(on)}")
        if open_:
            parts.append("we cannot tell yet on " + ", ".join(
                j.dataset + (f" (needs {j.seeds_needed} seeds)" if j.seeds_needed else "")
                for j in open_))
        head = f"Claim ({r['claim']}) on these {r['k']} data sets: " + "; ".join(parts) + ". "
        if len({j.verdict for j in here}) == 1 and decided:
            head = (f"Claim ({r['claim']}) is {decided[0].verdict} on each of these {r['k']} "
                    f"data sets. ")
        average = (f"The average over these {r['k']} data sets is {signed(r['effect'])} "
                   f"[{signed(r['low'])}, {signed(r['high'])}] (95 %, Welch–Satterthwaite df "
                   f"{r['df']:.1f}): a description of these data sets, not a test, and not a "
                   f"claim about data sets in general. ")
        differ = (f"Welch's test finds that the effect differs between them (F = "
                  f"{r['differ_f']:.2f}, p {p_rel(r['differ_p'])}): read each data set's verdict, "
                  f"not the average." if r["differ_p"] < ALPHA else
                  f"Welch's test finds no evidence that the effect differs between them (F = "
                  f"{r['differ_f']:.2f}, p {p_rel(r['differ_p'])}), which with {r['k']} data sets "
                  f"and few seeds is weak evidence that it does not.")
        out.append(head + average + differ)
    return out


def worst_case_text(table: pd.DataFrame) -> str:
    """The worst-case line of the report."""
    if not len(table):
        return ""
    changed = table[table["changes"]]
    head = ("With the lost trials put back at the worst value for each claim (a lost RollingQ "
            "trial at chance accuracy or the least favourable value the data set reached, a "
            "lost vanilla trial at the most favourable) and at the best")
    if not len(changed):
        return head + ", no verdict changes: the verdicts do not hang on the lost trials."
    parts = [f"({r['claim']}){' on ' + r['dataset'] if table['dataset'].nunique() > 1 else ''} "
             f"{r['verdict']} → {r['against']} (worst, effect {signed(r['effect_against'])}) "
             f"/ {r['for']} (best, {signed(r['effect_for'])})"
             for r in changed.to_dict("records")]
    return head + f", {len(changed)} verdict(s) would change: " + "; ".join(parts) + "."


def cannot_judge(judgements: list[Judgement]) -> list[str]:
    """Sentences naming the claims a study cannot judge, and why."""
    out = []
    for j in judgements:
        if j.verdict == CANNOT:
            out.append(f"{j.dataset}: claim ({j.claim.number}) cannot be judged: {j.reason}.")
    return out


def regrouped(res: Results, judgements: list[Judgement], alpha: float = ALPHA) -> list[str]:
    """A report of several folders: a sentence for each verdict that differs from the one the
    folder's own report gives (its claims judged alone), and why it can (a larger declared
    family, or seeds of one data set pooled from several folders); none for one folder."""
    if len(res.dirs) < 2:
        return []
    from analysis.results import load

    here = {(j.dataset, j.claim.number): j for j in judgements}
    out = []
    for d in res.dirs:
        alone = judge(load([d]), alpha, plan=False)
        for j in alone:
            now = here.get((j.dataset, j.claim.number))
            if now is None or now.verdict == j.verdict:
                continue
            out.append(f"Combining the folders changes a verdict: claim ({j.claim.number}) on "
                       f"{j.dataset} is {j.verdict} in `{d}`'s own report (Holm over "
                       f"{j.family_name or 'no family'}, {j.n} seeds) and {now.verdict} here "
                       f"(Holm over {now.family_name or 'no family'}, {now.n} seeds).")
    return out
