"""Claim `theory`: the MDP machinery against exact answers, the pruning rule on a hand-built bandit,
and `check` on a real small run and on records mutated to break each prediction."""

import copy
import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from repro.claims import CLAIMS, module, theory
from repro.core.config import ConfigError, from_dict

SMALL = dict(seeds=(0, 1, 2, 3, 4, 5), prune_sizes=(4, 8, 16), prune_streams=40, states=12, actions=4,
             option_lengths=((2, 4), (4, 8)), bootstrap_resamples=2000)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small real run (about a second), shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("theory")
    cfg = dataclasses.replace(theory.load_config(), **SMALL)
    return out, theory.run_experiments(cfg, out)


def statuses(verdicts, prefix):
    return {v.cell: v.status for v in verdicts if v.cell.startswith(prefix)}


def test_registry_names_the_claims_and_rejects_unknown_ids():
    assert {"table1", "mstep_loss", "penalty_ablation", "theory"} <= set(CLAIMS) and module("theory") is theory
    for claim in CLAIMS:  # the contract `ra3-repro list`, verify and report rely on
        mod = module(claim)
        assert mod.__doc__.startswith(f"Claim `{claim}`: ") and mod.CLAIM == claim
        assert callable(mod.run) and callable(mod.check) and set(mod.COST) == {"tiny", "small", "paper"}
    with pytest.raises(ConfigError, match="valid claims: .*theory"):
        module("theroy")


def test_shipped_config_loads_and_bad_values_fail_loudly():
    cfg = theory.load_config()
    assert len(cfg.seeds) >= theory.min_seeds(cfg.confidence)
    with pytest.raises(ConfigError, match="valid keys"):
        from_dict(theory.TheoryConfig, {**dataclasses.asdict(cfg), "gama": 0.9}, "test")
    with pytest.raises(ValueError, match="length 1 is a primitive action"):
        dataclasses.replace(cfg, option_lengths=((1, 3),))


def test_mdp_generator_is_seeded():
    def draw(seed):
        return theory.random_mdps(np.random.default_rng(seed), 3, 5, 4, 0.5, 2.0)

    (p1, r1), (p2, r2), (p3, _) = draw(7), draw(7), draw(8)
    assert np.array_equal(p1, p2) and np.array_equal(r1, r2) and not np.array_equal(p1, p3)
    assert p1.shape == (3, 5, 4, 5) and np.allclose(p1.sum(-1), 1) and 0 <= r1.min() and r1.max() <= 2.0


def test_value_iteration_converges_to_the_brute_force_optimum():
    gamma, states, actions = 0.9, 3, 2
    transitions, rewards = theory.random_mdps(np.random.default_rng(0), 1, states, actions, 0.5, 1.0)
    transitions, rewards = transitions[0], rewards[0]
    best = np.full(states, -np.inf)
    for policy in itertools.product(range(actions), repeat=states):  # every deterministic policy, solved exactly
        rows = np.arange(states), np.array(policy)
        best = np.maximum(best, np.linalg.solve(np.eye(states) - gamma * transitions[rows], rewards[rows]))
    v_star = theory.optimal_values(rewards, gamma * transitions)
    assert np.allclose(v_star, best, atol=1e-10)
    values, iterations = theory.value_iteration(rewards, gamma * transitions, v_star, 1e-8, 10_000)
    assert np.abs(values - best).max() <= 1e-8
    assert iterations <= math.ceil(theory.iteration_bound(gamma, rewards.max(), 1e-8))


def test_option_model_and_gamma_bar_on_a_hand_built_chain():
    # Two states that swap every step, reward 1 everywhere: an option of length tau from s collects
    # (1 - gamma^tau) / (1 - gamma), lands on s XOR (tau odd), and discounts by gamma^tau.
    gamma = 0.9
    transitions = np.array([[[0.0, 1.0]], [[1.0, 0.0]]])
    rewards = np.ones((2, 1))
    lengths = np.array([[2, 3], [3, 4]])
    sequences = np.zeros((2, 4), dtype=int)
    option_rewards, option_transitions = theory.option_model(transitions, rewards, gamma, sequences, lengths)
    assert np.allclose(option_rewards, (1 - gamma**lengths) / (1 - gamma))
    assert np.allclose(option_transitions.sum(-1), gamma**lengths)
    assert option_transitions[0, 0, 0] == pytest.approx(gamma**2)  # even length: back where it started
    assert option_transitions[0, 1, 1] == pytest.approx(gamma**3)  # odd length: on the other state
    assert theory.gamma_bar(option_transitions) == pytest.approx(gamma**2)
    assert theory.gamma_bar(gamma * transitions) == pytest.approx(gamma)


def test_pruning_on_a_hand_built_bandit():
    # Four one-state tasks, three decisions. The eps-optimal expert plays 0, 0, 1, and {1 or 2}:
    # w = (1/2, 3/8, 1/8). With sigma = 0.5 a decision is needed when w >= 1/6: decision 2 may be pruned.
    q_values = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.995]])
    weights = theory.expert_marginal(q_values, eps=0.01)
    assert np.allclose(weights, [0.5, 0.375, 0.125])
    needed = weights >= 0.5 / 3
    draws = np.array([[2, 2, 0, 2, 1, 0],   # needed decisions 0 and 1 both seen at the 5th sample
                      [1, 0, 0, 0, 0, 0],   # at the 2nd
                      [0, 0, 2, 2, 2, 2]])  # never: censored at 6 + 1
    assert theory.samples_to_prune(draws, needed).tolist() == [5, 2, 7]
    assert theory.prune_bound(3, 0.5, 0.05) == pytest.approx(3 * math.log(60) / 0.5)


def test_check_passes_on_a_real_small_run(small_run):
    _, record = small_run
    verdicts = theory.check(record)
    assert {v.status for v in verdicts} == {"PASS"}, [v for v in verdicts if v.status != "PASS"]
    assert {v.cell[:3] for v in verdicts} == {"(a)", "(b)", "(c)", "(d)", "(e)"}


def test_record_round_trips_and_plots_exist(small_run):
    out, record = small_run
    assert json.loads((out / "record.json").read_text()) == record
    assert record["config_hash"] == theory.config_hash(dataclasses.replace(theory.load_config(), **SMALL))
    for name in ("pruning.png", "convergence.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_slower_than_primitive_fail(small_run):
    record = copy.deepcopy(small_run[1])
    rows = record["convergence"]
    primitive = {r["seed"]: r["iterations"] for r in rows if r["setting"] == "primitive"}
    for row in rows:  # options take the primitive count and primitive takes the first options' count
        if row["setting"] == "primitive":
            row["iterations"] = next(r["iterations"] for r in rows if r["seed"] == row["seed"] and r is not row)
        else:
            row["iterations"] = primitive[row["seed"]]
    assert set(statuses(theory.check(record), "(e) options").values()) == {"FAIL"}


def test_samples_above_the_bound_fail(small_run):
    record = copy.deepcopy(small_run[1])
    for row in record["pruning"]:
        row["samples"] = [10 * n for n in row["samples"]]
    assert set(statuses(theory.check(record), "(a)").values()) == {"FAIL"}


def test_samples_linear_in_the_set_size_fail_the_shape(small_run):
    record = copy.deepcopy(small_run[1])
    for row in record["pruning"]:  # no log factor: N* proportional to |Z|
        row["samples"] = [3 * row["size"] + row["seed"] % 2] * len(row["samples"])
    assert statuses(theory.check(record), "(b)") == {"(b) pruning shape": "FAIL"}


def test_one_seed_is_inconclusive_for_the_paired_checks(small_run):
    record = copy.deepcopy(small_run[1])
    record["config"]["seeds"] = [0]
    record["pruning"] = [r for r in record["pruning"] if r["seed"] == 0]
    record["convergence"] = [r for r in record["convergence"] if r["seed"] == 0]
    verdicts = theory.check(record)
    paired = {**statuses(verdicts, "(b)"), **statuses(verdicts, "(c)"), **statuses(verdicts, "(e) options")}
    assert paired and set(paired.values()) == {"INCONCLUSIVE"}
    assert set(statuses(verdicts, "(d)").values()) == {"PASS"}  # per-run bounds still decide
