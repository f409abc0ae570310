import math

import numpy as np
import pytest

from cl_runner.results import metrics

# a[t, i]: accuracy on task i+1 after task t+1 (hand-made, T = 3)
A = [[0.90, 0.10, 0.20],
     [0.70, 0.95, 0.30],
     [0.60, 0.80, 0.85]]


def test_average_accuracy():
    assert metrics.average_accuracy(A) == pytest.approx((0.60 + 0.80 + 0.85) / 3)


def test_learning_accuracy():
    assert metrics.learning_accuracy(A) == pytest.approx((0.90 + 0.95 + 0.85) / 3)


def test_forgetting_uses_max_over_learned_rows_and_excludes_last_task():
    # task 1: max(0.90, 0.70) - 0.60 = 0.30; task 2: max(0.95) - 0.80 = 0.15; task 3 excluded
    assert metrics.forgetting(A) == pytest.approx((0.30 + 0.15) / 2)


def test_forgetting_ignores_rows_before_the_task_was_learned():
    # before learning task 2 its accuracy was 0.99 (row 1): must not count as a maximum
    a = [[0.9, 0.99], [0.8, 0.5]]
    assert metrics.forgetting(a) == pytest.approx(0.1)


def test_forgetting_max_is_not_just_the_diagonal():
    # task 1 improves after task 2 (0.95 > 0.90): the max is 0.95, forgetting 0.95 - 0.5
    a = [[0.90, 0.0, 0.0], [0.95, 0.9, 0.0], [0.50, 0.9, 0.9]]
    assert metrics.forgetting(a) == pytest.approx(((0.95 - 0.50) + (0.9 - 0.9)) / 2)


def test_backward_transfer():
    assert metrics.backward_transfer(A) == pytest.approx(((0.60 - 0.90) + (0.80 - 0.95)) / 2)


def test_forward_transfer():
    initial = [0.1, 0.05, 0.1]
    # a[1,2] - b2 = 0.10 - 0.05 ; a[2,3] - b3 = 0.30 - 0.10
    assert metrics.forward_transfer(A, initial) == pytest.approx((0.05 + 0.20) / 2)


def test_single_task_edge_case():
    a = [[0.97]]
    assert metrics.average_accuracy(a) == pytest.approx(0.97)
    assert metrics.learning_accuracy(a) == pytest.approx(0.97)
    assert math.isnan(metrics.forgetting(a))
    assert math.isnan(metrics.backward_transfer(a))
    assert metrics.average_accuracy_curve(a) == [pytest.approx(0.97)]


def test_average_accuracy_curve_uses_seen_tasks_only():
    assert metrics.average_accuracy_curve(A) == pytest.approx(
        [0.90, (0.70 + 0.95) / 2, (0.60 + 0.80 + 0.85) / 3])


def test_no_forgetting_for_a_perfect_learner():
    a = np.triu(np.ones((4, 4))).T  # 1 on and below the diagonal
    assert metrics.forgetting(a) == 0.0
    assert metrics.backward_transfer(a) == 0.0


def test_non_square_matrix_rejected():
    with pytest.raises(ValueError, match="square"):
        metrics.forgetting([[0.1, 0.2]])

