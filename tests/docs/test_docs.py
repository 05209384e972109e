"""The documentation the project owns: ``docs/`` built by mkdocs (material, mkdocstrings) in
strict mode, a README under 10 KB, and no reference to a file outside the repository.

- the strict build passes (a broken link, a missing page, a docstring reference that does not
  resolve, a nav entry without its file: each a warning, and strict turns warnings into a failed
  build), and a copy of the docs with a broken link, a nav entry without its page or a
  ``:::`` reference to a module that does not exist planted fails it;
- ``docs/<page>.md §N`` citations in the code and the README name a page that exists and a
  section ``## N.`` of it;
- nothing outside ``tests/`` names the team's reading material (``shared/``, ``METHOD.md``, ...);
- headless chromium renders the built home page and the method page (screenshots kept in
  ``artifacts/docs/``, gitignored).
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import readme

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "docs"
OUTSIDE = re.compile(r"\.\./shared|shared/|METHOD\.md|BASELINES\.md|PERF\.md|STYLE\.md|"
                     r"RAY-TUNE-NOTES")
# docs/method.md, docs/method.md §2, docs/baselines.md §3 and §7, docs/method.md §2 (AIR), §3 ...
CITATION = re.compile(r"docs/([\w-]+\.md)((?:,? (?:and )?§\d+(?: \([^)]*\))?)*)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings")


def tracked() -> list[Path]:
    return [f for f in readme.working_files() if f.relative_to(ROOT).parts[0] != "tests"
            and f.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".sbatch", ".txt", "")
            and f.stat().st_size < 2_000_000]


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    # No -q: mkdocs 1.6 counts warnings for --strict after its log level filters them, so a
    # quiet strict build passes with warnings (seen with a planted broken link).
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=project, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_nothing_outside_tests_names_a_file_outside_the_repository():
    found = []
    for path in tracked():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def doc_sections(docs: Path) -> dict[str, set[str]]:
    """Page name -> the numbers of its ``## N.`` sections."""
    return {page.name: set(re.findall(r"^## (\d+)\.", page.read_text(), re.M))
            for page in docs.glob("*.md")}


def citations(text: str, sections: dict[str, set[str]]) -> tuple[list, list[str]]:
    """The (page, section or None) cited in ``text``, and what does not resolve."""
    cited, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        for page, numbers in CITATION.findall(line):
            if page not in sections:
                bad.append(f"{n}: docs/{page} does not exist")
            numbers = re.findall(r"§(\d+)", numbers)
            for number in numbers:
                if number not in sections.get(page, ()):
                    bad.append(f"{n}: docs/{page} has no section {number}")
            cited += [(page, number) for number in numbers] or [(page, None)]
    return cited, bad


def test_every_docs_citation_names_a_page_and_its_section():
    sections = doc_sections(ROOT / "docs")
    cited, bad = [], []
    for path in tracked():
        c, b = citations(path.read_text(errors="replace"), sections)
        cited += c
        bad += [f"{path.relative_to(ROOT)}:{line}" for line in b]
    assert not bad, "\n".join(bad)
    # the core modules cite the method and baselines pages, by section
    assert {("method.md", "2"), ("method.md", "6"), ("baselines.md", "7")} <= set(cited)
    # and the check sees a wrong section, a second one in a list, and a missing page
    _, planted = citations("docs/method.md §2 and §99; docs/lost.md §1", sections)
    assert planted == ["1: docs/method.md has no section 99", "1: docs/lost.md does not exist",
                       "1: docs/lost.md has no section 1"]


def test_readme_is_under_10_kb_and_links_into_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 10_000, len(text.encode())
    for page in re.findall(r"\]\((docs/[\w/-]+\.(?:md|png))\)", text):
        assert (ROOT / page).is_file(), page
    assert "make study" in text and "make test" in text


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as the README's ``make docs`` builds it, in a copy of the checkout."""
    copy = readme.checkout(tmp_path_factory.mktemp("docs"))
    r = subprocess.run(readme.command("make docs"), cwd=copy, env=readme.shell_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return copy / "site"


def test_the_strict_build_passes_with_every_page(site):
    for page in ("index.html", "method/index.html", "baselines/index.html",
                 "configuration/index.html", "differences/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    config = (site / "configuration" / "index.html").read_text()
    assert "rollingq.beta" in config and "rotate when |AIR| &gt; beta" in config  # generated
    hooks = runpy.run_path(str(ROOT / "docs" / "hooks.py"))
    rows = (len(hooks["table_rows"](ROOT / "docs" / "method.md", 6))
            + len(hooks["table_rows"](ROOT / "docs" / "baselines.md", 7)))
    assert rows >= 25
    differences = (site / "differences" / "index.html").read_text()
    assert differences.count("<tr>") == rows + 1  # every row of both pages, one header
    assert "<td>RollingQ</td>" in differences and "<td>JMT</td>" in differences
    method = (site / "method" / "index.html").read_text()
    assert method.count("<math ") >= 20 and "\\(" not in method  # maths as MathML, no script
    api = (site / "api" / "index.html").read_text()
    first = __import__("rollingq.rotation").rotation.__doc__.strip().splitlines()[0]
    assert "rollingq.rotation" in api and first.split("(")[0][:40] in api  # from the docstring


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of what the build reads, which builds as it is."""
    copy = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    for package in ("rollingq", "study", "analysis"):  # mkdocstrings reads them
        shutil.copytree(ROOT / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    r = build(copy, copy / "ok")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return copy


@pytest.mark.parametrize("plant, says", [
    (("docs/index.md", "\nSee [the lost page](no-such-page.md).\n"), "no-such-page.md"),
    (("mkdocs.yml", "\n  - Lost: lost-page.md\n"), "lost-page.md"),
    (("docs/api.md", "\n::: rollingq.no_such_module\n"), "rollingq.no_such_module"),
], ids=["broken-link", "missing-page", "docstring-reference"])
def test_a_planted_fault_fails_the_strict_build(project, plant, says, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("ok"))
    path, text = plant
    (copy / path).write_text((copy / path).read_text() + text)
    r = build(copy, tmp_path / "site")
    assert r.returncode != 0
    assert says in r.stdout + r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y "
                    "chromium): the site was built, no screenshot taken")
@pytest.mark.parametrize("page", ["index.html", "method/index.html"])
def test_chromium_renders_the_home_and_method_pages(site, page, tmp_path):
    import matplotlib.image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{page.split('/')[0].removesuffix('.html')}.png"
    shot.unlink(missing_ok=True)
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
                        "--virtual-time-budget=5000", f"--screenshot={shot}",
                        (site / page).as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (900, 1280)
    assert img[..., :3].std() > 0.05  # rendered text and theme, not a blank canvas
