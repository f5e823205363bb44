"""The learning notes, answered on this machine: `python -m jaxmlp.notes [--out DIR] [--quick]
[--only NAME ...]` runs, for each question of the notes, the smallest measurement that answers
it, each in a run or sweep folder of its own under DIR (made by the package's own code paths:
`sweep.run_sweep`, `runner.run`, `overfit_run.run_overfit`, `gradcheck.step_sizes`,
`reference.write_case`, `loop.loss_and_grad`), and writes `DIR/index.html`: each question in
the notes' words, the answer as sentences generated from the folder's numbers, its pictures,
the command that measures it again, and links to its runs' and sweeps' pages.

The modules: `budget` (the sizes of each mode, and the `Setting` every measurement gets),
`questions` (the table: quotes, measurement, reading), `inputs`, `steps`, `failures`, `tools`
(the measurements and the readings of their folders, by theme), `gradients` (each layer's
gradient at initialisation), `answer` (an `Answer`, and reading a folder back), `page` (the
page's context, from the folders alone), `run` (measuring into a notes folder), `cli` (the
command).
"""

from __future__ import annotations

from jaxmlp.notes.answer import Answer, Unreadable
from jaxmlp.notes.budget import BUDGETS, Budget, Setting
from jaxmlp.notes.page import INDEX_HTML, NOTES_JSON, notes_context, write_notes_page
from jaxmlp.notes.questions import NAMES, QUESTIONS, Question
from jaxmlp.notes.run import run_notes

__all__ = ["BUDGETS", "INDEX_HTML", "NAMES", "NOTES_JSON", "QUESTIONS", "Answer", "Budget",
           "Question", "Setting", "Unreadable", "notes_context", "run_notes",
           "write_notes_page"]
