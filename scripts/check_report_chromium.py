"""Check an HTML report in headless Chromium: it renders, and every image loads.

Not part of the test suite (CI machines lack Chromium). Usage::

    python scripts/check_report_chromium.py [REPORT.html] [--screenshot report.png]

Without REPORT, a report is built from docs/baselines/*.json plus the shipped reference
curves. A copy of the page with a small checking script appended is loaded with
``--dump-dom``; the script writes how many <img> elements decoded (naturalWidth > 0). The
page itself is then screenshotted for a person to look at. Exit 0 when all images load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  const mark = document.createElement("div");
  mark.id = "trellic-check";
  mark.textContent = `images loaded=${loaded} total=${images.length}`;
  document.body.appendChild(mark);
});
</script></body>"""


def chromium(browser: str, profile: str, *arguments: str) -> str:
    command = [browser, *FLAGS, f"--user-data-dir={profile}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        sys.exit(f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def build_report(folder: Path) -> Path:
    curves = sorted(str(path) for path in (ROOT / "docs" / "baselines").glob("*.json"))
    if not curves:
        sys.exit("no results in docs/baselines/: pass a REPORT.html")
    page = folder / "report.html"
    subprocess.run([sys.executable, "-m", "trellic.cli", "report", *curves, "--reference", "all",
                    "--anchor", "jpeg", "-o", str(page)], cwd=ROOT, check=True)
    return page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("report-screenshot.png"))
    parser.add_argument("--window", default="1300,9000", help="window size W,H of the shot")
    args = parser.parse_args()
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if browser is None:
        sys.exit("chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        page = args.report.resolve() if args.report else build_report(folder)
        checked = folder / "checked.html"
        checked.write_text(page.read_text().replace("</body>", CHECK, 1))
        dom = chromium(browser, str(folder / "profile1"), "--virtual-time-budget=10000",
                       "--dump-dom", checked.as_uri())
        match = re.search(r"images loaded=(\d+) total=(\d+)", dom)
        if not match:
            sys.exit("the page did not finish loading (no check mark in the DOM)")
        loaded, total = int(match[1]), int(match[2])
        chromium(browser, str(folder / "profile2"), f"--window-size={args.window}",
                 "--hide-scrollbars", f"--screenshot={args.screenshot.resolve()}", page.as_uri())
    print(f"{page.name}: {loaded}/{total} images loaded; screenshot {args.screenshot}")
    return 0 if total > 0 and loaded == total and args.screenshot.is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
