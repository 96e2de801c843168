"""axe-core (npm ``axe-core``, from node_modules) run inside a Playwright page."""

from __future__ import annotations

import json

from tests.harness.browser import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def serious_violations(page) -> list[str]:  # noqa: ANN001 (playwright's own types)
    """axe-core's serious and critical violations on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    result = json.loads(page.evaluate("async () => JSON.stringify(await axe.run(document))"))
    found = []
    for violation in result["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [" ".join(map(str, n["target"])) for n in violation["nodes"]][:5]
            found.append(
                f"{violation['id']} ({violation['impact']}): {violation['help']}: {targets}"
            )
    return found
