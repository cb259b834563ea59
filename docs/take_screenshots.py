"""Screenshots of the Ray dashboard and of `mlflow ui` for the docs, from the default sweep, in headless Chromium.
Retake them whenever the default sweep changes.

    pip install playwright; apt-get install chromium          # the system browser: nothing is downloaded
    python experiments/sweep.py &                             # the default sweep (README command 1)
    python docs/take_screenshots.py dashboard                 # while the sweep runs
    mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db --host 127.0.0.1 --port 5000 &
    python docs/take_screenshots.py mlflow --experiment dasvit-sweep
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).parent / "img"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def shoot(pages: list[tuple[str, str]], cookies: list[dict] | None = None, wait_ms: int = 4000, prepare=None) -> None:
    """Open each URL, let ``prepare(page, name)`` arrange the view, and save a PNG under docs/img/."""
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 850})
        if cookies:
            context.add_cookies(cookies)
        page = context.new_page()
        for url, name in pages:
            page.goto(url, wait_until="load")  # both UIs poll, so "networkidle" never comes
            page.wait_for_timeout(wait_ms)
            if prepare is not None:
                prepare(page, name)
            page.screenshot(path=str(OUT / name))
            print(OUT / name)
        browser.close()


def dashboard(url: str) -> None:
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()  # Ray 2.60 token auth
    cookie = {"name": "ray-authentication-token", "value": token, "url": url}
    shoot([(f"{url}/#/jobs", "ray-dashboard-jobs.png"), (f"{url}/#/actors", "ray-dashboard-actors.png")], [cookie])


def mlflow(url: str, experiment: str) -> None:
    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{url}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request).read())

    by_name = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}"
    exp = json.loads(urllib.request.urlopen(by_name).read())
    exp_id = exp["experiment"]["experiment_id"]
    runs = post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id],
                                                "filter": "tags.`dasvit.kind` = 'search'", "max_results": 50})["runs"]
    ids = json.dumps([r["info"]["run_id"] for r in runs]).replace('"', "%22")
    def prepare(page, name: str) -> None:
        for label in ("Got it", "Model training"):  # dismiss the GenAI tour, show the classic ML view
            if page.get_by_text(label, exact=True).count():
                page.get_by_text(label, exact=True).first.click()
                page.wait_for_timeout(1500)
        close = page.locator("button[aria-label*='lose']")
        if close.count():
            close.last.click()  # the assistant side panel
        if name == "mlflow-runs.png":  # unfold the sweep's run to show its trials and retrainings
            page.locator("[role='gridcell'] button").first.click()
        if name == "mlflow-compare.png":
            page.get_by_role("button", name="Clear All").click()
            for field, values in (("Parameters:", ("fairness_lambda", "keep_ratio")),
                                  ("Metrics:", ("objective", "val_acc"))):
                box = page.get_by_text(field, exact=True).locator("xpath=following-sibling::*[1]")
                for value in values:
                    box.click()
                    page.keyboard.type(value)
                    page.keyboard.press("Enter")
                page.keyboard.press("Escape")
        page.wait_for_timeout(2500)

    shoot([(f"{url}/#/experiments/{exp_id}/runs", "mlflow-runs.png"),
           (f"{url}/#/compare-runs?runs={ids}&experiments=[%22{exp_id}%22]", "mlflow-compare.png")],
          wait_ms=5000, prepare=prepare)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["dashboard", "mlflow"])
    parser.add_argument("--url")
    parser.add_argument("--experiment", default="dasvit-sweep")
    args = parser.parse_args()
    if args.what == "dashboard":
        dashboard(args.url or "http://127.0.0.1:8265")
    else:
        mlflow(args.url or "http://127.0.0.1:5000", args.experiment)
