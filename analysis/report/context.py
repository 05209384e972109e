"""What every section is built from and writes into: ``Context`` holds the study and the
report's sections; ``Section`` is one section as data (its blocks, its lines of "What the study
says" and the numbers it shows, by name). A section is built on its own (``Context.section``):
one that fails says so in the report, and the rest is still written."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import outcomes, plots
from analysis.report.blocks import Block, Bullets, Figure, Heading, Para
from analysis.report.captions import text
from analysis.results import Results

log = logging.getLogger(__name__)

CLAIMS_TITLE = "The paper's claims on this study"
# the headline, then every outcome but the pooled adaptivity (kept for the paper's Table 2 number)
DEFAULT_METRICS = tuple(m for m in outcomes.OUTCOMES if m != "out_adaptivity_pooled")


@dataclass
class Section:
    """One section of the report.

    Attributes:
        key: Its name in code (``main_table``, ``claims``, ...).
        title: Its heading.
        blocks: What it shows, in order (its heading is added when the report is rendered).
        summary: Its lines of "What the study says".
        data: The numbers behind what it shows, by name (frames, counts, verdicts): what a test
            or another reader checks instead of the wording.
        error: The exception that stopped it, if one did.
    """

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None


@dataclass
class Context:
    """One report in the making.

    Attributes:
        res: The results it reports.
        out: Where it is written (figures under ``out/figures``).
        metrics: The outcomes the sensitivity statistics explain.
        head: The blocks above the sections (title, question, when and from what).
        sections: The sections built so far, in the report's order.
        table: The main table (``tables.main_table``), set by the main-table section and read by
            the paper comparison (empty when that section did not run).
    """

    res: Results
    out: Path
    metrics: tuple[str, ...] = DEFAULT_METRICS
    head: list[Block] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def figdir(self) -> Path:
        return self.out / "figures"

    @property
    def current(self) -> Section:
        return self.sections[-1]

    @property
    def summary(self) -> list[str]:
        """The section being built's lines of "What the study says"."""
        return self.current.summary

    def add(self, *blocks: Block) -> None:
        """Blocks of the section being built (of the head before the first section)."""
        (self.current.blocks if self.sections else self.head).extend(blocks)

    def record(self, **data: Any) -> None:
        """Numbers the section being built shows, by name (``Section.data``)."""
        self.current.data.update(data)

    def figure(self, name: str, fig: object | None, caption: str) -> bool:
        """Saves ``fig`` as ``figures/<name>.png`` (and ``.pdf``) and adds it; False when there
        is none."""
        if fig is None:
            return False
        path = plots.save(fig, self.figdir / f"{name}.png")
        fig.savefig(path.with_suffix(".pdf"), format="pdf")  # for papers
        self.add(Figure(path, caption))
        return True

    def section(self, key: str, title: str, build: Callable[[Context], None]) -> Section:
        """Builds one section; a failure is reported in place of the rest of its content."""
        self.sections.append(Section(key, title))
        try:
            build(self)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the report
            log.exception("report section %r failed", title)
            self.current.error = e
            self.add(Para(text("report.failed", error=f"{type(e).__name__}: {e}")))
        return self.current

    def by_key(self) -> dict[str, Section]:
        return {s.key: s for s in self.sections}

    def blocks(self) -> list[Block]:
        """The whole report: the head, "What the study says", then each section."""
        said = [line for s in self.sections for line in s.summary]
        out = [*self.head, Heading(2, "What the study says"), Bullets(said)]
        for s in self.sections:
            out += [Heading(2, s.title), *s.blocks]
        return out
