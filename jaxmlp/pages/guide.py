"""Where the guide (docs/) explains each finding of the report: the one table of them, and the
link a page in any folder uses to reach it.

The guide is Markdown in the checkout's docs/ folder. A page links to it by a path relative to
the page's own folder, so a run folder inside the checkout links into it and keeps working when
the checkout moves; where there is no checkout (an installed wheel) the page names the section
instead of linking to it.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
WRONG = "when-training-goes-wrong.md"

# Every code of `jaxmlp.report`'s findings -> (guide page, anchor of its section). The anchors
# are the sections' headings as GitHub spells them (tests/test_docs.py checks each resolves, and
# that every code the report can give is here).
FINDING_GUIDE: dict[str, tuple[str, str]] = {
    "nonfinite": (WRONG, "the-loss-becomes-nan-or-inf"),
    "exploded": (WRONG, "or-it-explodes-without-reaching-nan"),
    "large_inputs": (WRONG, "inputs-that-are-not-scaled-and-why-adam-hides-it"),
    "dead_units": (WRONG, "relu-units-die"),
    "saturated_units": (WRONG, "tanh-or-sigmoid-units-saturate"),
    "vanishing_gradients": (WRONG, "gradients-do-not-reach-the-first-layer"),
    "exploding_gradients": (WRONG, "gradients-do-not-reach-the-first-layer"),
    "large_updates": (WRONG, "steps-that-are-too-large-or-too-small-and-the-mean-in-mean-"
                             "squared-error"),
    "tiny_updates": (WRONG, "steps-that-are-too-large-or-too-small-and-the-mean-in-mean-"
                            "squared-error"),
    "zero_outputs": (WRONG, "all-the-outputs-are-zero-or-every-input-gets-the-same-prediction"),
    "constant_outputs": (WRONG, "all-the-outputs-are-zero-or-every-input-gets-the-same-"
                                "prediction"),
    "negative_predictions": (WRONG, "the-loss-falls-but-the-predictions-do-not-improve"),
    "collapsed": (WRONG, "the-loss-falls-but-the-predictions-do-not-improve"),
    "not_learning": (WRONG, "the-loss-falls-but-the-predictions-do-not-improve"),
    "low_accuracy": (WRONG, "the-loss-falls-but-the-predictions-do-not-improve"),
    "overfitting": (WRONG, "training-accuracy-far-above-test-accuracy"),
    "loss_spike": (WRONG, "or-the-loss-spikes-and-comes-back-down"),
    "gradients_stopped": (WRONG, "the-loss-settles-at-the-uniform-guess-and-the-gradients-stop"),
    "uniform_plateau": (WRONG, "the-loss-settles-at-the-uniform-guess-and-the-gradients-stop"),
    "not_memorised": (WRONG, "how-long-should-it-take-to-fit-a-few-examples"),
}


@dataclasses.dataclass(frozen=True)
class GuideLink:
    href: str | None  # relative to the page's folder; None without a checkout's docs/
    where: str  # "docs/when-training-goes-wrong.md#relu-units-die", said in words when no href


def guide_link(page: str, anchor: str, folder: Path, docs: Path = DOCS) -> GuideLink:
    """A link from a page in `folder` to `anchor` of the guide's `page`."""
    where = f"docs/{page}" + (f"#{anchor}" if anchor else "")
    target = docs / page
    if not target.is_file():
        return GuideLink(None, where)
    relative = os.path.relpath(target, folder.resolve())
    href = urllib.parse.quote(Path(relative).as_posix()) + (f"#{anchor}" if anchor else "")
    return GuideLink(href, where)


def finding_link(code: str, folder: Path, docs: Path = DOCS) -> GuideLink:
    """The guide's section on finding `code` (a code not in the table: the page on what goes
    wrong, from its top)."""
    page, anchor = FINDING_GUIDE.get(code, (WRONG, ""))
    return guide_link(page, anchor, folder, docs)
