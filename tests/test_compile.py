"""hardware.compile (issue 31): the step's forward pass through torch.compile gives the eager
run's numbers up to float rounding, also for a strategy whose batch changes size (ER's replay)
and one with a host sync in its hooks (GEM's QP); strategies it cannot compile are refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch._dynamo
import torch._dynamo.utils

from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from tests.conftest import compose_run
from tests.test_precision import BASE, BEFORE, FAST_MCSGD

#: largest |difference| allowed between a compiled and an eager run: accuracy per cell (the
#: 1,000 test images: 0.001 per image) and relative test loss. Measured on the naive run below:
#: accuracies identical, test losses within 2e-7 relative (Inductor's fused kernels round
#: differently)
ACCURACY_TOLERANCE, LOSS_RTOL = 0.002, 1e-4


def _metrics(tmp_path, root, strategy: str, extra: list[str]) -> list[tuple[float, float]]:
    out = tmp_path / "-".join([strategy, *extra]).replace("=", "_")
    run_experiment(compose_run([f"strategy={strategy}", f"data.root={root}", *BASE, *extra]), out)
    frame = pd.read_csv(out / "metrics.csv").sort_values(["train_task", "eval_task"])
    return list(zip(frame["accuracy"].tolist(), frame["loss"].tolist(), strict=True))


def _close(got, want) -> None:
    for (acc, loss), (acc_ref, loss_ref) in zip(got, want, strict=True):
        assert abs(acc - acc_ref) <= ACCURACY_TOLERANCE
        assert loss == pytest.approx(loss_ref, rel=LOSS_RTOL)


@pytest.mark.parametrize(("strategy", "extra"), [
    ("naive", []),
    # dropout 0.2: the compiled forward must draw eager's dropout masks (fallback_random)
    ("mcsgd", FAST_MCSGD),
    # replay: batches of 10 on task 1, 10 + 10 replayed after it (a recompilation, one shape more)
    ("er", ["benchmark.train_samples_per_task=300"]),
    # a host sync (the QP's inputs to the CPU) in after_backward, outside the compiled graph
    ("gem", ["benchmark.train_samples_per_task=300", "strategy.memory_per_task=32"]),
])
def test_a_compiled_step_gives_the_eager_numbers(tmp_path, mnist_small_test_set, strategy, extra):
    torch._dynamo.reset()  # compiled code is reused across models of one structure: start anew
    torch._dynamo.utils.counters.clear()
    compiled = _metrics(tmp_path, mnist_small_test_set, strategy,
                        [*extra, "hardware.compile=default"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    eager = (BEFORE[strategy] if strategy in BEFORE
             else _metrics(tmp_path, mnist_small_test_set, strategy, extra))
    _close(compiled, eager)


@pytest.mark.parametrize("value", ["true", "fast", "1"])
def test_a_bad_compile_value_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"hardware\.compile must be false, default, "
                                          r"reduce-overhead, got"):
        compose_run([f"hardware.compile={value}"])


@pytest.mark.parametrize("strategy", ["supsup", "impresslearn"])
def test_supermask_strategies_refuse_compile_and_write_nothing(tmp_path, strategy):
    run = compose_run([f"strategy={strategy}", "model=masked_mlp", "hardware=cpu",
                       "hardware.compile=reduce-overhead"])
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"hardware\.compile=reduce-overhead: strategy="
                                          rf"{strategy} refuses it: .*mask slot"):
        run_experiment(run, out)
    assert not out.exists()
