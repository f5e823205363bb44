"""The questions of the learning notes, in the notes' own words and order, each with the
measurement that answers it and the reading of its folder: the one table `python -m
jaxmlp.notes` runs and its page shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jaxmlp.notes.failures as failures  # the modules, not the package: no cycle
import jaxmlp.notes.inputs as inputs
import jaxmlp.notes.steps as steps
import jaxmlp.notes.tools as tools
from jaxmlp.notes.answer import Answer
from jaxmlp.notes.budget import Setting

WRONG = "when-training-goes-wrong.md"


@dataclasses.dataclass(frozen=True)
class Quote:
    date: str  # as the notes date it
    text: str  # verbatim


@dataclasses.dataclass(frozen=True)
class Question:
    """One question: `name` is its folder and its `--only` name; `measure(setting, folder)`
    makes the folder; `answer(root, rel)` reads the folder `root/rel` back into an `Answer`."""

    name: str
    title: str
    quotes: tuple[Quote, ...]
    measured: str  # what is measured, in a line
    measure: Callable[[Setting, Path], None]
    answer: Callable[[Path, str], Answer]
    guide: tuple[str, str]  # (page of docs/, anchor)
    experiment: str = ""  # experiments/<script>.py: the same question at a larger budget


QUESTIONS: tuple[Question, ...] = (
    Question(
        "flatten", "Why flatten the images?",
        (Quote("07/12/24", "I realized that instead of passing in the 2D (28,28) examples to "
               "the ML algorithm. I have to flatten the dimensions before sending it in. I "
               "remember reading about the intuition for this somewhere. But now with my "
               "implementation in the first layer. Each pixel will have a weight associated to "
               "it."),),
        "the same MLP on pixels in place and on pixels shuffled by one fixed permutation",
        inputs.measure_flatten, inputs.answer_flatten, ("experiments.md", ""), "sweep_pixels"),
    Question(
        "scaling", "Why divide the pixels by 255?",
        (Quote("07/12/24", "I also read in the blog that I need to divide the pixels by 255 to "
               "scale it to be values between 0-1. because the pixel scale is 255."),
         Quote("07/13/24", "Scaling: I don't think we need to scale the input values to be "
               "between 0-1. Its currently 0-255. That is alright. Why do it?")),
        "raw 0..255 against 0..1 inputs, with plain SGD and with Adam",
        inputs.measure_scaling, inputs.answer_scaling,
        (WRONG, "inputs-that-are-not-scaled-and-why-adam-hides-it"), "sweep_reduction"),
    Question(
        "one_hot", "Why one-hot targets?",
        (Quote("07/12/24", "He converted the output values to one hot encoding. This is "
               "something I am familiar with but why do it?"),),
        "ten outputs against one-hot targets, or one output regressed onto the label (MSE)",
        inputs.measure_one_hot, inputs.answer_one_hot, ("experiments.md", ""), "sweep_loss"),
    Question(
        "over_the_total", "Each output over the total, or softmax?",
        (Quote("07/13/24", "And it seems like the result can be any number. Unless I slap a "
               "loss function that will convert the neurons outputs to probabilities. loss "
               "function could be each_item / total_score. And the max_index(probs) gets "
               "chosen."),),
        "predictions made as each output over the total, or by softmax, under the notes' MSE",
        inputs.measure_over_the_total, inputs.answer_over_the_total,
        (WRONG, "the-loss-falls-but-the-predictions-do-not-improve"), "sweep_loss"),
    Question(
        "all_zero", "Why are all the outputs zero?",
        (Quote("07/13/24", "I need to put some kind of a constraints on this thing for common "
               "issues. Because I have 5 test inputs and I noticed that sometimes all of the "
               "outputs are 0."),
         Quote("07/20/24", "There is also the problem of all of the predicted probabilities "
               "coming as zero. That should not be happening.")),
        "all-zero outputs and predictions in the notes' own setup, and with tiny weights",
        failures.measure_all_zero, failures.answer_all_zero,
        (WRONG, "all-the-outputs-are-zero-or-every-input-gets-the-same-prediction"),
        "sweep_init"),
    Question(
        "step", "Which way, and how far, should a step go?",
        (Quote("07/19/24", "To drive the loss to zero in which direction should I update my "
               "parameters? Should I subtract or add the gradient for each parameter?"),
         Quote("07/20/24", "The question still is how do we know that the gradient we "
               "calculated is the \"how much\" to move towards the global minimum in the cost "
               "function.")),
        "one step both ways at many learning rates on the notes' loss, and a learning-rate "
        "sweep", steps.measure_step, steps.answer_step,
        ("check-your-backprop.md", "which-direction-and-how-far"), "sweep_lr"),
    Question(
        "vanishing", "Why do the gradients shrink toward the first layer?",
        (Quote("07/20/24", "Okay so the parameters are not getting their gradients like they "
               "are supposed to."),
         Quote("07/22/24", "So it seems like there are gradients flowing back all the way to "
               "the first layer but the number of gradients start to decrease after the last "
               "layer. Why is that???")),
        "layer 1's gradient norm over the last layer's at initialisation, by depth, activation "
        "and initialisation", failures.measure_vanishing, failures.answer_vanishing,
        (WRONG, "gradients-do-not-reach-the-first-layer"), "sweep_init"),
    Question(
        "toy", "A toy problem to debug on",
        (Quote("07/20/24", "So there are too many parameters for me to debug the network "
               "effectively. I think... So I need to design a toy problem to make it easier "
               "to fix."),),
        "a small network on the spirals, with its decision boundary",
        tools.measure_toy, tools.answer_toy, ("toy-problems.md", "")),
    Question(
        "backprop", "Checking my own backprop by hand",
        (Quote("07/22/24", "TODO: I want to manually back propagate from my loss function just "
               "to prove to myself that it will actually update the parameters in a meaningful "
               "way."),),
        "a worked case of the notes' loss to check a hand-written backprop against, and a "
        "check of a file with a classic mistake", tools.measure_backprop, tools.answer_backprop,
        ("check-your-backprop.md", "is-my-own-backprop-right")),
    Question(
        "plateau", "Why does the loss go down while the predictions do not improve?",
        (Quote("07/24/24", "So it seems like the loss function I have in place does not make "
               "the predictions get better even when the loss is going down. How is that "
               "possible??"),),
        "the notes' own setup, trained with --diagnose", failures.measure_plateau,
        failures.answer_plateau,
        (WRONG, "the-loss-settles-at-the-uniform-guess-and-the-gradients-stop")),
    Question(
        "mean", "What is the mean in mean squared error for, and the /num_classes?",
        (Quote("07/24/24", "I think the step where I take the average loss between classes is "
               "unnecessary. Why do I even take the average anyways? What is that "
               "accomplishing why is there a mean in the mean squared error? What is the mean "
               "accomplishing?"),),
        "the gradient at initialisation and training at one learning rate, with sum or mean "
        "over the classes and over the batch", steps.measure_mean, steps.answer_mean,
        (WRONG, "steps-that-are-too-large-or-too-small-and-the-mean-in-mean-squared-error"),
        "sweep_reduction"),
    Question(
        "overfit", "How long should overfitting a few images take?",
        (Quote("07/24/24", "How long should it take to overfit a small dataset of MNIST "
               "anyways?"),),
        "--overfit N: full-batch steps and seconds to memorise N images",
        tools.measure_overfit, tools.answer_overfit,
        (WRONG, "how-long-should-it-take-to-fit-a-few-examples"), "overfit_small"),
    Question(
        "speed", "Why is my run so slow?",
        (Quote("07/24/24", "My execution runs so slow... its ridiculous."),),
        "one epoch of the default network beside this machine's matrix-product floor, and "
        "where the run's time goes", tools.measure_speed, tools.answer_speed,
        ("speed.md", "")),
)

NAMES = tuple(q.name for q in QUESTIONS)


def question(name: str) -> Question:
    return next(q for q in QUESTIONS if q.name == name)
