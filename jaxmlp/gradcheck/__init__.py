"""Is my backprop right? Check the training step's gradient three ways, then measure what a step
does.

    python -m jaxmlp.gradcheck            # toy 2-D problem and a small MNIST subset
    python -m jaxmlp.gradcheck --wrong activation   # a deliberately wrong gradient: must FAIL

For every loss variant (output x error x class reduction x example reduction, plus integer
targets) and every layer, the gradient a training step takes (`loop.loss_and_grad`: JAX's
differentiation of `losses.loss_fn`, with the step's `fast.dense` and its reductions as values) is
compared, in float64, with

1. central finite differences of the loss itself: (L(p + h v) - L(p - h v)) / 2h approximates
   the derivative along v, with no calculus at all (a 5-point stencil, accurate to O(h^4));
2. a hand-written NumPy backpropagation (`jaxmlp.numpy_mlp`), the chain rule written out.

The relative errors are printed as a table; any above `TOLERANCE` fails the command (exit 1).
Then the step-size demo answers "which direction, and how far": the loss after a step of
-lr x gradient for a range of lr (it falls, then overshoots), and after +lr x gradient (it rises).

float64 is switched on only inside this package's functions (`jax.enable_x64` as a context), so
importing it changes nothing for the rest of jaxmlp.
"""

from __future__ import annotations

from jaxmlp.gradcheck.check import (
    FD_STEPS,
    RANDOM_COORDINATES,
    TOLERANCE,
    TOP_COORDINATES,
    LayerCheck,
    VariantCheck,
    batched_loss,
    check_all,
    check_variant,
    format_table,
    probe_directions,
    relative_error,
)
from jaxmlp.gradcheck.gradients import WRONG_KINDS, GradFn, jax_grad, wrong_grad
from jaxmlp.gradcheck.problems import (
    Problem,
    init_params,
    loss_variants,
    mnist_problem,
    toy_problem,
    variant_name,
)
from jaxmlp.gradcheck.steps import (
    DEFAULT_LRS,
    StepRow,
    describe_steps,
    format_steps,
    step_sizes,
)

__all__ = [
    "DEFAULT_LRS",
    "FD_STEPS",
    "RANDOM_COORDINATES",
    "TOLERANCE",
    "TOP_COORDINATES",
    "WRONG_KINDS",
    "GradFn",
    "LayerCheck",
    "Problem",
    "StepRow",
    "VariantCheck",
    "batched_loss",
    "check_all",
    "check_variant",
    "describe_steps",

    "format_steps",
    "format_table",
    "init_params",
    "jax_grad",
    "loss_variants",
    "mnist_problem",
    "probe_directions",
    "relative_error",
    "step_sizes",
    "toy_problem",
    "variant_name",
    "wrong_grad",
]
