"""The HTML report opened in a real headless browser (Debian's chromium): every image decoded,
the tables present; a screenshot is kept in artifacts/analysis/ (gitignored).

Needs ``apt-get install -y chromium`` (the CI setup installs it); skipped with that command as
the reason when chromium is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "analysis"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
# Runs after every image has loaded or failed, then leaves its verdict in the DOM.
CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var d = document.createElement("div");
  d.id = "analysis-check";
  d.textContent = "images=" + imgs.length + " loaded=" + ok.length +
    " tables=" + document.querySelectorAll("table").length +
    " rows=" + document.querySelectorAll("table tbody tr").length +
    " widths=" + imgs.map(function (i) { return i.naturalWidth; }).join(",");
  document.body.appendChild(d);
});
</script>"""

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: apt-get install -y chromium")]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(paper_report):
    return paper_report


def test_every_image_loads_and_the_tables_are_there(report, tmp_path):
    html = report.read_text()
    n_img = html.count("<img ")
    n_tables = html.count("<table>")
    assert n_img >= 5 and n_tables >= 8
    page = tmp_path / "check.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    p = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    found = re.search(r'id="analysis-check">images=(\d+) loaded=(\d+) tables=(\d+) rows=(\d+) '
                      r'widths=([\d,]*)<', p.stdout)
    assert found, "the check script did not run: " + p.stdout[-500:]
    images, loaded, tables, rows = map(int, found.groups()[:4])
    widths = [int(w) for w in found.group(5).split(",")]
    assert images == loaded == n_img
    assert all(w >= 400 for w in widths)  # decoded PNGs, not broken-image icons
    assert tables == n_tables and rows > 20
    for heading in ("Main table", "The paper's claims on this study", "Sensitivity",
                    "Comparison with the paper"):
        assert f"<h2>{heading}</h2>" in p.stdout


def test_screenshot_is_kept_as_an_artifact(report, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    p = chromium(tmp_path, "--window-size=1280,4000", f"--screenshot={shot}", report.as_uri())
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (4000, 1280)
    assert img[..., :3].std() > 0.05  # the page rendered, not a blank canvas
