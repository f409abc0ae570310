"""SI, Synaptic Intelligence (Zenke, Poole & Ganguli, "Continual Learning Through Synaptic
Intelligence", ICML 2017, Section 3, Eqs. 3-5; the authors' code ganguli-lab/pathint,
``pathint/protocols.py`` ``PATH_INT_PROTOCOL`` and ``pathint/optimizers.py``).
Section and equation numbers are recalled (the paper's text was not at hand when this was
written); every statement about the authors' code was read in it.

**Path integral (Eq. 3).** While task mu is trained, every parameter k accumulates

    omega_k^mu = - sum_steps g_k(theta_old) * (theta_new,k - theta_old,k)

over the optimizer steps, with ``theta_new - theta_old`` the step's actual parameter change
(whatever the optimizer: momentum and Adam included) and g the gradient at the weights before
the step. **g is the gradient of the task's loss alone (the cross-entropy), without the
surrogate**: the authors' code accumulates ``-unreg_grads * deltas``, where ``unreg_grads`` is
the gradient of ``initial_loss``, the loss before ``lam * regularizer`` is added
(``KOOptimizer.get_updates``), while the weights move along the gradient of the full loss. This
module does the same. (Other implementations differ: van de Ven's continual-learning and
Mammoth's ``si.py`` use the gradient of the full loss, the latter approximated as
``lr * g^2``.)

**Consolidation (Eq. 5)** at the end of task mu (``after_training``), with
``Delta_k = theta_k(t_mu) - theta_k(t_{mu-1})`` the task's total change:

    Omega_k <- relu( Omega_k + omega_k^mu / (Delta_k^2 + xi) )

a plain sum over tasks (``omega_decay='sum'``); the relu of the sum and the reset of omega are
the authors' ``task_updates``. The anchor ``theta~`` becomes the current weights.

**Surrogate loss (Eq. 4)** while training task mu > 1: ``c * sum_k Omega_k (theta_k -
theta~_k)^2`` (no 1/2: the authors' ``quadratic_regularizer`` times ``lam``).

Hot path, one parameter list at a time with in-place ``torch._foreach`` kernels on buffers
made once per task (no allocation, no host sync): ``penalty`` computes ``S = Omega (theta -
theta~)`` and the surrogate's value without autograd
(:class:`~cl_runner.strategies.quadratic.AnchoredQuadratic`); ``after_backward`` adds ``2c S``
to ``p.grad``, so the optimizer follows the full loss; ``after_step`` adds ``-(p.grad - 2c S)
* (theta - theta_old)`` to omega (the cross-entropy's gradient g = p.grad - 2c S) and
remembers theta. Task 1 (no Omega yet) pays only the last part, without the ``2c S`` term.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.quadratic import AnchoredQuadratic
from cl_runner.strategies.schemas import SIConfig


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters SI regularizes: all that require gradients, in ``parameters()`` order."""
    return [p for p in model.parameters() if p.requires_grad]


def _detached(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of ``params`` without gradient history."""
    return [p.detach().clone() for p in params]


@STRATEGIES.register("si", config=SIConfig)
class SI(Strategy):
    """Synaptic Intelligence (see the module docstring). ``stats()`` reports, per task, the mean
    and max of the consolidated Omega.

    Attributes:
        omega: ``[Omega_k]`` per parameter tensor, the consolidated importance (None before the
            first consolidation).
        anchor: ``[theta~]`` the weights at the end of the previous task = at the start of
            the current one (the reference ``Delta`` is taken from them too).
        path: ``[omega_k]`` the running path integral of the current task.
        previous: the weights before the next optimizer step.
    """

    #: the task's parameter list and surrogate buffers, made by before_task
    transient_attributes = ("_params", "_surrogate")

    def __init__(self, cfg: SIConfig) -> None:
        super().__init__(cfg)
        cfg.validate()  # ConfigError on an out-of-range value (checked first by dispatch)
        self.omega: list[torch.Tensor] | None = None
        self.anchor: list[torch.Tensor] | None = None
        self.path: list[torch.Tensor] | None = None
        self.previous: list[torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._params: list[nn.Parameter] = []
        self._surrogate: AnchoredQuadratic | None = None

    def before_task(self, ctx: TaskContext) -> None:
        """Start the task's path integral at zero from the current weights."""
        self._params = params = _trainable(ctx.model)
        with torch.no_grad():
            if self.anchor is None:  # task 1: theta(t_0) = the initial weights
                self.anchor = _detached(params)
            self.previous = _detached(params)
            self.path = [torch.zeros_like(p) for p in params]
        self._surrogate = (None if self.omega is None
                           else AnchoredQuadratic(params, self.omega, self.anchor))

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """The surrogate's value ``c * sum Omega (theta - theta~)^2`` (no autograd: its
        gradient ``2 c Omega (theta - theta~)`` is added in :meth:`after_backward`)."""
        if self._surrogate is None:
            return None
        return self.cfg.c * self._surrogate.value()

    def after_backward(self, model: nn.Module) -> None:
        """Add the surrogate's gradient ``2 c S`` to ``p.grad``: the optimizer follows the
        full loss (the path integral takes the cross-entropy's part back out in
        :meth:`after_step`)."""
        if self._surrogate is not None:
            self._surrogate.add_gradient(self.cfg.c)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """``omega += -g * (theta - theta_old)`` with g the cross-entropy's gradient at
        theta_old, ``p.grad - 2 c S``; remember theta (Eq. 3, one step)."""
        params = self._params
        torch._foreach_sub_(self.previous, params)  # theta_old - theta = -delta
        torch._foreach_addcmul_(self.path, [_grad(p) for p in params], self.previous)
        if self._surrogate is not None:  # take the surrogate's part 2 c S out of g
            torch._foreach_addcmul_(self.path, self._surrogate.scaled, self.previous,
                                    value=-2.0 * self.cfg.c)
        torch._foreach_copy_(self.previous, params)

    @torch.no_grad()
    def after_training(self, ctx: TaskContext) -> None:
        """Consolidate (Eq. 5): ``Omega = relu(Omega + omega / (Delta^2 + xi))``, then the
        anchor becomes the current weights."""
        self.consolidate(_trainable(ctx.model))
        flat = torch.cat([o.reshape(-1) for o in self.omega])
        self.history.append({"task": ctx.task, "omega_mean": float(flat.mean()),
                             "omega_max": float(flat.max())})

    @torch.no_grad()
    def consolidate(self, params: list[torch.Tensor]) -> None:
        """Fold the current path integral into Omega at weights ``params`` (Eq. 5) and move
        the anchor there; the path integral restarts at zero."""
        delta = torch._foreach_sub(params, self.anchor)
        denom = torch._foreach_add(torch._foreach_mul(delta, delta), self.cfg.xi)
        new = torch._foreach_div(self.path, denom)
        if self.omega is not None:
            new = torch._foreach_add(new, self.omega)
        self.omega = [o.clamp_min_(0) for o in new]
        self.anchor = _detached(params)
        self.path = [torch.zeros_like(p) for p in params]
        self._surrogate = None  # before_task builds it for the new Omega and anchor

    def stats(self) -> dict[str, Any]:
        return {"si": self.history}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """State: Omega and the anchor theta~ (2 P floats, P the trainable parameters), not
        tied to one task. Not counted: the running path integral and the previous weights,
        working memory of the task in progress."""
        state = 0.0 if self.omega is None else float(
            sum(o.numel() for o in self.omega) + sum(a.numel() for a in self.anchor))
        return cost(model, [0.0] * num_tasks, state,
                    "task_floats: none; state_floats: the consolidated importance Omega and "
                    "the anchor weights (2 x trainable parameters)")


def _grad(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, or zeros where the parameter got no gradient this step."""
    return p.grad if p.grad is not None else torch.zeros_like(p)
