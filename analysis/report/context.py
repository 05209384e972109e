"""What every section is built from and writes into (``Context``), and how one section is built
on its own (``Context.section``: one that fails says so in the report, and the rest is still
written)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import outcomes, plots
from analysis.report.blocks import Block, Figure, Heading, Para
from analysis.results import Results

log = logging.getLogger(__name__)

CLAIMS_TITLE = "The paper's claims on this study"
# the headline, then every outcome but the pooled adaptivity (kept for the paper's Table 2 number)
DEFAULT_METRICS = tuple(m for m in outcomes.OUTCOMES if m != "out_adaptivity_pooled")


@dataclass
class Context:
    """One report in the making.

    Attributes:
        res: The results it reports.
        out: Where it is written (figures under ``out/figures``).
        metrics: The outcomes the sensitivity statistics explain.
        blocks: The report so far.
        summary: The lines of "What the study says", added by the sections as they find them.
        table: The main table (``tables.main_table``), set by the main-table section and read by
            the paper comparison (empty when that section did not run).
    """

    res: Results
    out: Path
    metrics: tuple[str, ...] = DEFAULT_METRICS
    blocks: list[Block] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def figdir(self) -> Path:
        return self.out / "figures"

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def figure(self, name: str, fig: object | None, caption: str) -> bool:
        """Saves ``fig`` as ``figures/<name>.png`` and adds it; False when there is none."""
        if fig is None:
            return False
        path = plots.save(fig, self.figdir / f"{name}.png")
        self.add(Figure(path, caption))
        return True

    def section(self, title: str, build: Callable[[Context], None]) -> None:
        """A heading and its content; a failure is reported in place of the content."""
        self.add(Heading(2, title))
        try:
            build(self)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the report
            log.exception("report section %r failed", title)
            self.add(Para(f"This section could not be generated ({type(e).__name__}: {e})."))
