"""Claim `theory`: a compact decision set is pruned to an epsilon-optimal subset with fewer expert
samples (about |Z| log(|Z|/delta) / sigma), and options of length tau shorten the effective horizon
1 / (1 - gamma_bar), gamma_bar = sup E[gamma^tau], so value iteration converges in fewer iterations.

Where: RA3 (arXiv:2509.25810) Theorem 3.5 (pruning) and Theorem 3.6 (RL convergence). This module
checks both numerically on seeded random tabular MDPs.
Not measured: Thm 3.5's conclusion on the value lost by pruning, E[Delta(M, Z_hat)] <= epsilon;
the pruning checks are on the sample count, the theorem's scaling claim.

Commands (numpy only, CPU; what a run costs: `COST` below, also printed by `ra3-repro list`):
    ra3-repro theory [--seeds N] [--out DIR]   # run(): record.json, pruning.png, convergence.png
    ra3-repro verify RUN_DIR                   # check(): one verdict line per cell

The exact theorem statements are UNCERTAIN in our sources (secondary transcriptions), so the
operational reading below is ours; every value lives in `configs/claims/theory.yaml`.

Pruning (Thm 3.5):
- A family is a seeded set of random tabular MDPs (Dirichlet transitions, rewards uniform in
  [0, r_max]) sharing a decision set Z; `prune_pairs_per_decision * |Z| / prune_states` tasks, so
  the number of (task, state) situations grows with |Z|. Q* comes from exact policy iteration.
- Expert: an epsilon-optimal demonstrator. An expert sample draws a (task, state) uniformly and
  the expert's decision uniformly among the decisions within `expert_eps` of the best there. Its
  marginal over decisions, w(z), is computed exactly by enumerating the family; drawing decisions
  from w is the same distribution as drawing (task, state) and then the expert's choice.
- (epsilon, sigma)-suboptimal: w(z) < sigma / |Z|, i.e. z is epsilon-optimal (and picked) in too
  few situations to matter. The others are the needed decisions.
- Pruning: mid-training on expert data keeps the decisions that appear in it (the support a
  behaviour-cloned prior puts mass on) and prunes the rest. Support only grows with more samples,
  so "every (epsilon, sigma)-suboptimal action is pruned" is read as "pruning is safe": the
  samples-to-prune N* of one stream of expert samples is the first N at which every needed
  decision has appeared, so that everything pruned from then on is (epsilon, sigma)-suboptimal.
- Bound, constant derived (C = 1): P(N* > N) <= sum over needed z of (1 - sigma/|Z|)^N
  <= |Z| exp(-N sigma / |Z|), which is <= delta at N = |Z| ln(|Z|/delta) / sigma. So each stream
  exceeds that N with probability at most delta; check (a) tests the exceedance count against
  Binomial(runs, delta). Streams are censored at 4x the bound (reaching it needs probability
  |Z| (delta/|Z|)^4) and counted as exceedances.

Convergence (Thm 3.6):
- One random MDP per seed (`states`, `actions`). Options: as many as primitive actions, each a
  fixed random sequence of primitive actions run open loop; its length tau(s, o) is drawn once per
  start state uniformly from [tau_min, tau_max] (state-dependent termination). The options model is
  the multi-time model: R(s, o) = E[sum_{k < tau} gamma^k r_k] and P(s, o, s') = E[gamma^tau 1(s_tau = s')].
- gamma_bar = sup_{s, o} E[gamma^tau | s, o], measured as the largest row sum of that discounted
  transition model (for primitive actions it is gamma).
- Value iteration over options is the SMDP Bellman operator (T V)(s) = max_o R(s, o) + sum_s' P(s, o, s') V(s'),
  a gamma_bar-contraction; over primitive actions it is the usual operator (tau = 1). It starts from
  V = 0 and counts iterations until max_s |V_k(s) - V*(s)| <= eps, V* of the same decision set
  (exact policy iteration). Options restrict the policy class, so their V* is lower; each decision
  set is checked against its own optimum, as the theorem does.
- Bound: ||V_k - V*|| <= gamma_bar^k R_max / (1 - gamma_bar) with R_max the largest reward of one
  decision (measured: r for an action, the accumulated discounted reward for an option), so
  k <= ln(R_max / (eps (1 - gamma_bar))) / ln(1 / gamma_bar) <= 1 / (1 - gamma_bar) ln(R_max / (eps (1 - gamma_bar))),
  the paper's expression; iterations are integers, so they are compared with its ceiling.

Seeds: every random draw comes from numpy generators seeded with (seed, experiment, size), so a
seed's results do not depend on which other seeds or sizes run; results are bit-stable on one
machine (BLAS reductions may differ in the last bits across machines, which can move a count by
one only at an exact tie with a threshold).
"""

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from repro.claims.verdicts import Verdict, side_of_zero
from repro.core.config import CONFIG_DIR, ConfigError, from_dict, load
from repro.core.files import atomic_write
from repro.core.provenance import environment
from repro.core.runs import config_hash
from repro.core.scale import ScaleConfig
from repro.core.stats import paired_bootstrap

log = logging.getLogger(__name__)

CLAIM = "theory"
CONFIG = CONFIG_DIR / "claims" / "theory.yaml"
PRUNING, CONVERGENCE = 1, 2  # experiment ids inside the seed sequences


@dataclasses.dataclass(frozen=True)
class TheoryConfig:
    seeds: tuple[int, ...]
    """Independent repetitions; the paired checks need enough of them (see `min_seeds`)."""
    gamma: float
    """Discount factor of every MDP."""
    r_max: float
    """Rewards are uniform in [0, r_max]."""
    dirichlet: float
    """Concentration of the Dirichlet next-state distributions."""
    prune_sizes: tuple[int, ...]
    """Decision-set sizes |Z| of the pruning experiment, increasing."""
    prune_states: int
    """States per task in the pruning families."""
    prune_pairs_per_decision: int
    """(task, state) situations per decision in a pruning family: tasks = this * |Z| / prune_states."""
    prune_streams: int
    """Independent streams of expert samples per family, each giving one samples-to-prune."""
    sigma: float
    """A decision the expert uses with probability below sigma / |Z| is (epsilon, sigma)-suboptimal."""
    delta: float
    """Failure probability of the pruning bound |Z| ln(|Z|/delta) / sigma."""
    expert_eps: float
    """The expert picks uniformly among decisions within this of the best Q* value."""
    states: int
    """States of the convergence MDPs."""
    actions: int
    """Primitive actions of the convergence MDPs, and the number of options."""
    option_lengths: tuple[tuple[int, ...], ...]
    """[tau_min, tau_max] for each options setting; tau_min >= 2 (length 1 is a primitive action)."""
    eps: float
    """Value iteration has converged when max_s |V_k - V*| <= eps."""
    confidence: float
    """Two-sided level of the bootstrap intervals and tests in `check`."""
    bootstrap_resamples: int
    """Resamples of the seed bootstrap."""

    def __post_init__(self):
        problems = []
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds must be distinct and non-empty, got {self.seeds}")
        sizes = list(self.prune_sizes)
        if len(sizes) < 3 or sizes != sorted(set(sizes)) or sizes[0] < 2:
            problems.append(f"prune_sizes must be >= 3 increasing sizes >= 2 (two points always fit a line), "
                            f"got {self.prune_sizes}")
        if not self.option_lengths or any(len(p) != 2 or not 2 <= p[0] <= p[1] for p in self.option_lengths):
            problems.append(f"option_lengths must be [tau_min, tau_max] pairs with 2 <= tau_min <= tau_max "
                            f"(length 1 is a primitive action), got {self.option_lengths}")
        for name in ("gamma", "delta", "confidence"):
            if not 0 < getattr(self, name) < 1:
                problems.append(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if not 0 < self.sigma <= 1:
            problems.append(f"sigma must lie in (0, 1] (a needed decision has w >= sigma/|Z|), got {self.sigma}")
        for name in ("r_max", "dirichlet", "eps", "expert_eps", "prune_states", "prune_pairs_per_decision",
                     "prune_streams", "states", "actions", "bootstrap_resamples"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))


NEEDS = ()
COST = {"tiny": "2.9 s on 2 CPU cores (numpy only: 1.3 s pruning, 0.1 s convergence, the rest plots and provenance)",
        "small": "the same (the experiments do not depend on the scale)", "paper": "the same"}


def load_config(path: Path | None = None) -> TheoryConfig:
    return load(TheoryConfig, path or CONFIG)


def random_mdps(rng: np.random.Generator, count: int, states: int, actions: int,
                dirichlet: float, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """`count` random MDPs: transitions P[b, s, a, s'] and rewards R[b, s, a] uniform in [0, r_max]."""
    transitions = rng.dirichlet(np.full(states, dirichlet), size=(count, states, actions))
    rewards = rng.uniform(0.0, r_max, size=(count, states, actions))
    return transitions, rewards


def bellman(rewards: np.ndarray, discounted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Q(s, d) = R(s, d) + sum_s' P(s, d, s') V(s'), batched over leading axes; P carries the discount."""
    return rewards + np.einsum("...sdt,...t->...sd", discounted, values)


def optimal_values(rewards: np.ndarray, discounted: np.ndarray) -> np.ndarray:
    """Exact V* by policy iteration (a linear solve per policy), batched over leading axes."""
    states = rewards.shape[-2]
    values = np.zeros(rewards.shape[:-1])
    policy = None
    for _ in range(1000):
        greedy = bellman(rewards, discounted, values).argmax(-1)
        if policy is not None and (greedy == policy).all():
            return values
        policy = greedy
        r_pi = np.take_along_axis(rewards, policy[..., None], -1)[..., 0]
        p_pi = np.take_along_axis(discounted, policy[..., None, None], -2)[..., 0, :]
        values = np.linalg.solve(np.eye(states) - p_pi, r_pi[..., None])[..., 0]
    raise RuntimeError("policy iteration did not stabilise in 1000 steps")


def value_iteration(rewards: np.ndarray, discounted: np.ndarray, v_star: np.ndarray, eps: float,
                    max_iterations: int) -> tuple[np.ndarray, int]:
    """Value iteration from V = 0 until max |V - V*| <= eps; the values and the iteration count
    (max_iterations + 1 if it never got there)."""
    values = np.zeros_like(v_star)
    for iteration in range(1, max_iterations + 1):
        values = bellman(rewards, discounted, values).max(-1)
        if np.abs(values - v_star).max() <= eps:
            return values, iteration
    return values, max_iterations + 1


def option_model(transitions: np.ndarray, rewards: np.ndarray, gamma: float, sequences: np.ndarray,
                 lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-time model of open-loop options: option o plays sequences[o, :tau(s, o)] from state s.

    Returns R[s, o] = E[sum_{k < tau} gamma^k r_k] and P[s, o, s'] = E[gamma^tau 1(s_tau = s')].
    All start states and options advance together, one primitive step at a time.
    """
    states = transitions.shape[0]
    options, longest = sequences.shape
    occupancy = np.broadcast_to(np.eye(states)[:, None, :], (states, options, states)).copy()
    option_rewards = np.zeros((states, options))
    option_transitions = np.zeros((states, options, states))
    for step in range(longest):
        action = sequences[:, step]
        running = step < lengths  # (s, o): the option started in s has not ended yet
        option_rewards += running * gamma**step * np.einsum("sot,to->so", occupancy, rewards[:, action])
        occupancy = np.einsum("sot,tou->sou", occupancy, transitions[:, action, :])
        option_transitions += (lengths == step + 1)[..., None] * gamma ** (step + 1) * occupancy
    return option_rewards, option_transitions


def gamma_bar(discounted: np.ndarray) -> float:
    """sup over (s, d) of E[gamma^tau]: the largest total mass of a discounted transition row."""
    return float(discounted.sum(-1).max())


def iteration_bound(gamma_bar: float, r_max: float, eps: float) -> float:
    """Thm 3.6's 1/(1 - gamma_bar) ln(R_max / (eps (1 - gamma_bar))), R_max the largest reward of one decision."""
    return 1.0 / (1.0 - gamma_bar) * math.log(r_max / (eps * (1.0 - gamma_bar)))


def expert_marginal(q_values: np.ndarray, eps: float) -> np.ndarray:
    """w(z): probability that a uniformly drawn situation (all leading axes) yields decision z from
    an expert uniform over its eps-optimal decisions."""
    near_best = q_values >= q_values.max(-1, keepdims=True) - eps
    choice = near_best / near_best.sum(-1, keepdims=True)
    return choice.reshape(-1, q_values.shape[-1]).mean(0)


def samples_to_prune(draws: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Per stream (row of `draws`), the 1-based sample count at which every needed decision has
    appeared; streams that never cover them get draws.shape[1] + 1. Some decision is always needed:
    the most used one has w >= 1/|Z| >= sigma/|Z|."""
    hits = draws[:, :, None] == np.flatnonzero(needed)
    first = np.where(hits.any(1), hits.argmax(1), draws.shape[1])
    return first.max(1) + 1


def prune_bound(size: int, sigma: float, delta: float) -> float:
    """Thm 3.5's |Z| ln(|Z|/delta) / sigma, with the constant 1 of the union bound (module docstring)."""
    return size * math.log(size / delta) / sigma


def pruning_run(cfg: TheoryConfig, seed: int, size: int) -> dict:
    """One family of |Z| = size decisions and `prune_streams` streams of expert samples."""
    rng = np.random.default_rng([seed, PRUNING, size])
    tasks = math.ceil(cfg.prune_pairs_per_decision * size / cfg.prune_states)
    transitions, rewards = random_mdps(rng, tasks, cfg.prune_states, size, cfg.dirichlet, cfg.r_max)
    discounted = cfg.gamma * transitions
    q_values = bellman(rewards, discounted, optimal_values(rewards, discounted))
    weights = expert_marginal(q_values, cfg.expert_eps)
    needed = weights >= cfg.sigma / size
    cap = math.ceil(4 * prune_bound(size, cfg.sigma, cfg.delta))
    draws = rng.choice(size, size=(cfg.prune_streams, cap), p=weights)
    return {"seed": seed, "size": size, "tasks": tasks, "needed": int(needed.sum()),
            "sigma_eff": float(size * weights[needed].min()), "cap": cap,
            "samples": samples_to_prune(draws, needed).tolist()}


def convergence_runs(cfg: TheoryConfig, seed: int) -> list[dict]:
    """Iterations to eps-optimality on one MDP: primitive actions, then each options setting."""
    rng = np.random.default_rng([seed, CONVERGENCE])
    transitions, rewards = random_mdps(rng, 1, cfg.states, cfg.actions, cfg.dirichlet, cfg.r_max)
    transitions, rewards = transitions[0], rewards[0]
    models = [("primitive", (1, 1), rewards, cfg.gamma * transitions)]
    for low, high in cfg.option_lengths:
        option_rng = np.random.default_rng([seed, CONVERGENCE, low, high])
        sequences = option_rng.integers(cfg.actions, size=(cfg.actions, high))
        lengths = option_rng.integers(low, high + 1, size=(cfg.states, cfg.actions))
        models.append((f"options tau {low}-{high}", (low, high),
                       *option_model(transitions, rewards, cfg.gamma, sequences, lengths)))
    rows = []
    for name, tau, decision_rewards, discounted in models:
        measured_gamma_bar, r_max = gamma_bar(discounted), float(decision_rewards.max())
        bound = iteration_bound(measured_gamma_bar, r_max, cfg.eps)
        v_star = optimal_values(decision_rewards, discounted)
        _, iterations = value_iteration(decision_rewards, discounted, v_star, cfg.eps, 10 * math.ceil(bound))
        rows.append({"seed": seed, "setting": name, "tau": list(tau), "gamma_bar": measured_gamma_bar,
                     "r_max": r_max, "v_star_mean": float(v_star.mean()), "iterations": iterations})
    return rows


def plan(scale: ScaleConfig, seeds: list[int] | None):
    """Numpy on a CPU: no stage worth pricing."""
    return []


def run(scale: ScaleConfig, seeds: list[int] | None, out_dir: Path, sets: list[str] | tuple[str, ...] = (),
        root: Path | None = None) -> dict:
    """The claim interface: the shipped config (configs/claims/theory.yaml) with `seeds` if given. The
    experiments are tabular MDPs, the same at every scale, so `scale` and `root` are not used."""
    if sets:
        raise ConfigError(f"--set {' '.join(sets)}: the theory claim has no scale settings; its values are in {CONFIG}")
    cfg = load_config()
    if seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(seeds))
    return run_experiments(cfg, out_dir)


def run_experiments(cfg: TheoryConfig, out_dir: Path) -> dict:
    """Both experiments over every seed; writes pruning.png, convergence.png, then record.json last
    (its presence means the run finished)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pruning = [pruning_run(cfg, seed, size) for seed in cfg.seeds for size in cfg.prune_sizes]
    log.info("theory: pruning done in %.1f s", time.perf_counter() - start)
    convergence = [row for seed in cfg.seeds for row in convergence_runs(cfg, seed)]
    seconds = time.perf_counter() - start
    log.info("theory: both experiments done in %.1f s", seconds)
    record = {"claim": CLAIM, "config": dataclasses.asdict(cfg), "config_hash": config_hash(cfg),
              "seeds": list(cfg.seeds), "seconds": seconds, "pruning": pruning, "convergence": convergence,
              "environment": environment()}
    text = json.dumps(record, indent=1) + "\n"
    record = json.loads(text)  # what `check` will read from disk: tuples become lists
    plot_pruning(record, out_dir / "pruning.png")
    plot_convergence(record, out_dir / "convergence.png")
    atomic_write(out_dir / "record.json", text)
    return record


def check(record: dict) -> list[Verdict]:
    """Every verdict of the claim: (a) pruning bound, (b) pruning shape, (c) smaller sets need fewer
    samples, (d) iteration bound, (e) options converge faster and gamma_bar < gamma."""
    if record.get("claim") != CLAIM:
        raise ConfigError(f"not a {CLAIM} record (claim = {record.get('claim')!r})")
    cfg = from_dict(TheoryConfig, record["config"], "record.json: config")
    return [*_check_prune_bound(cfg, record["pruning"]), _check_prune_shape(cfg, record["pruning"]),
            *_check_prune_order(cfg, record["pruning"]), *_check_iteration_bound(cfg, record["convergence"]),
            *_check_options(cfg, record["convergence"])]


def min_seeds(confidence: float) -> int:
    """Fewest paired seeds that can reach `confidence` at all: a two-sided sign test with every seed
    agreeing has p = 2 * 0.5^seeds, which must be <= 1 - confidence."""
    return math.ceil(math.log2(2 / (1 - confidence)))


def _verdict(cell: str, measured: float, reference: float, band: tuple, statistic: str, status: str,
             reason: str) -> Verdict:
    return Verdict(CLAIM, cell, float(measured), float(reference), band, statistic, status, reason)


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k)."""
    def pmf(j: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                        + j * math.log(p) + (n - j) * math.log1p(-p))
    return max(0.0, 1.0 - sum(pmf(j) for j in range(k)))


def _check_prune_bound(cfg: TheoryConfig, rows: list[dict]) -> list[Verdict]:
    alpha = (1 - cfg.confidence) / len(cfg.prune_sizes)  # Bonferroni over the sizes
    verdicts = []
    for size in cfg.prune_sizes:
        samples = np.concatenate([row["samples"] for row in rows if row["size"] == size])
        bound = prune_bound(size, cfg.sigma, cfg.delta)
        exceed = int((samples > bound).sum())
        allowed = 0
        while _binomial_tail(allowed + 1, len(samples), cfg.delta) >= alpha:
            allowed += 1
        verdicts.append(_verdict(
            f"(a) pruning bound |Z|={size}", exceed, cfg.delta * len(samples), (0, allowed),
            f"streams with N* > |Z| ln(|Z|/delta)/sigma = {bound:.0f} (C = 1): {exceed} of {len(samples)}; "
            f"largest N*/bound = {samples.max() / bound:.2f}",
            "PASS" if exceed <= allowed else "FAIL",
            f"each stream exceeds the bound with probability <= delta = {cfg.delta} (union bound), so the count "
            f"is at most Binomial({len(samples)}, {cfg.delta}); {allowed} is its upper {alpha:.3g}-tail "
            f"quantile ({1 - cfg.confidence:g} split over {len(cfg.prune_sizes)} sizes)"))
    return verdicts


def _slopes(curves: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Least-squares slopes of log(curve) on log(size), one per row of `curves`."""
    x = np.log(sizes) - np.log(sizes).mean()
    y = np.log(curves)
    return (y - y.mean(-1, keepdims=True)) @ x / (x @ x)


def _mean_curves(cfg: TheoryConfig, rows: list[dict]) -> np.ndarray:
    """Mean samples-to-prune per (seed, size), in the config's order."""
    means = {(row["seed"], row["size"]): np.mean(row["samples"]) for row in rows}
    return np.array([[means[seed, size] for size in cfg.prune_sizes] for seed in cfg.seeds])


def _check_prune_shape(cfg: TheoryConfig, rows: list[dict]) -> Verdict:
    sizes = np.array(cfg.prune_sizes, dtype=float)
    curves = _mean_curves(cfg, rows)
    slope = float(_slopes(curves.mean(0), sizes))
    # The theorem's shape |Z| ln(|Z|/delta') for any confidence delta' in [delta, 1]; the mean of a
    # coupon-collector time, |Z| H_|Z| ~ |Z| ln(|Z| e^0.58), is one of them.
    band = (float(_slopes(sizes * np.log(sizes / cfg.delta), sizes)), float(_slopes(sizes * np.log(sizes), sizes)))
    rng = np.random.default_rng(0)
    resampled = curves[rng.integers(0, len(curves), size=(cfg.bootstrap_resamples, len(curves)))].mean(1)
    tail = (1 - cfg.confidence) / 2
    low, high = np.quantile(_slopes(resampled, sizes), [tail, 1 - tail])
    if len(cfg.seeds) < min_seeds(cfg.confidence):
        status = "INCONCLUSIVE"
    elif band[0] <= low and high <= band[1]:
        status = "PASS"
    else:
        status = "FAIL" if high < band[0] or low > band[1] else "INCONCLUSIVE"
    return _verdict(
        "(b) pruning shape", slope, band[1], band,
        f"log-log slope of mean N* over |Z| in {list(cfg.prune_sizes)}: {slope:.3f}, seed-bootstrap "
        f"{cfg.confidence:.0%} interval [{low:.3f}, {high:.3f}] over {len(cfg.seeds)} seeds; "
        "PASS needs the interval inside the band",
        status,
        "band = slopes of |Z| ln(|Z|/delta') over the same sizes for delta' from delta (lower end) to 1 (|Z| ln|Z|, "
        "upper end): the theorem fixes the shape up to its confidence term; |Z| (slope 1) and |Z|^2 (slope 2) lie "
        f"outside; fewer than {min_seeds(cfg.confidence)} seeds is INCONCLUSIVE")


def _paired(cell: str, better: np.ndarray, worse: np.ndarray, cfg: TheoryConfig, what: str) -> Verdict:
    """`worse` should exceed `better` on every seed: paired bootstrap of mean(worse - better) > 0."""
    needed = min_seeds(cfg.confidence)
    diff = paired_bootstrap(worse, better, n_resamples=cfg.bootstrap_resamples, confidence=cfg.confidence)
    if len(better) < needed:
        status = "INCONCLUSIVE"
    else:
        status = side_of_zero(diff["low"], diff["high"], +1)
    return _verdict(
        cell, diff["mean"], 0.0, (0.0, None),
        f"paired over {len(better)} seeds: mean {what} = {diff['mean']:.1f}, bootstrap {cfg.confidence:.0%} "
        f"interval [{diff['low']:.1f}, {diff['high']:.1f}]; PASS needs the interval above 0",
        status,
        f"the ordering is a paired difference on the same seeds; below {needed} seeds no paired test can "
        f"reach {cfg.confidence:.0%} (sign test), so it is INCONCLUSIVE; an interval straddling 0 is INCONCLUSIVE")


def _check_prune_order(cfg: TheoryConfig, rows: list[dict]) -> list[Verdict]:
    curves = _mean_curves(cfg, rows)
    return [_paired(f"(c) |Z|={small} needs fewer samples than |Z|={large}", curves[:, i], curves[:, i + 1], cfg,
                    f"N*(|Z|={large}) - N*(|Z|={small})")
            for i, (small, large) in enumerate(zip(cfg.prune_sizes, cfg.prune_sizes[1:], strict=False))]


def _settings(rows: list[dict]) -> dict[str, list[dict]]:
    """Convergence rows grouped by setting, each list in seed order."""
    grouped: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        grouped.setdefault(row["setting"], []).append(row)
    return grouped


def _check_iteration_bound(cfg: TheoryConfig, rows: list[dict]) -> list[Verdict]:
    verdicts = []
    for setting, runs in _settings(rows).items():
        bounds = [math.ceil(iteration_bound(r["gamma_bar"], r["r_max"], cfg.eps)) for r in runs]
        slack = [r["iterations"] - b for r, b in zip(runs, bounds, strict=True)]
        worst = int(np.argmax(slack))
        verdicts.append(_verdict(
            f"(d) iteration bound, {setting}", max(slack), 0.0, (None, 0.0),
            f"max over {len(runs)} seeds of iterations - ceil(1/(1-gamma_bar) ln(R_max/(eps(1-gamma_bar)))): "
            f"{max(slack)} (seed {runs[worst]['seed']}: {runs[worst]['iterations']} iterations, bound {bounds[worst]}, "
            f"gamma_bar {runs[worst]['gamma_bar']:.4f})",
            "PASS" if max(slack) <= 0 else "FAIL",
            "a deterministic bound: value iteration from 0 is a gamma_bar-contraction with "
            "||V*|| <= R_max/(1-gamma_bar), so every seed must respect it; iterations are integers, hence the ceiling"))
    return verdicts


def _check_options(cfg: TheoryConfig, rows: list[dict]) -> list[Verdict]:
    grouped = _settings(rows)
    primitive = np.array([r["iterations"] for r in grouped.pop("primitive")], dtype=float)
    verdicts = []
    for setting, runs in grouped.items():
        iterations = np.array([r["iterations"] for r in runs], dtype=float)
        verdicts.append(_paired(f"(e) {setting} converge in fewer iterations than primitive", iterations, primitive,
                                cfg, "iterations(primitive) - iterations(options)"))
        largest = max(r["gamma_bar"] for r in runs)
        verdicts.append(_verdict(
            f"(e) gamma_bar < gamma, {setting}", largest, cfg.gamma, (None, cfg.gamma),
            f"largest measured gamma_bar over {len(runs)} seeds: {largest:.4f} (gamma^tau_min = "
            f"{cfg.gamma ** runs[0]['tau'][0]:.4f})",
            "PASS" if largest < cfg.gamma else "FAIL",
            "options last at least 2 steps, so E[gamma^tau] <= gamma^2 < gamma on every row; deterministic"))
    return verdicts


def plot_pruning(record: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # a bare Figure renders PNG with Agg, no global backend

    cfg = from_dict(TheoryConfig, record["config"], "record.json: config")
    sizes = np.array(cfg.prune_sizes, dtype=float)
    curves = _mean_curves(cfg, record["pruning"])
    mean = curves.mean(0)
    slope = float(_slopes(mean, sizes))
    scale = np.exp(np.mean(np.log(mean) - slope * np.log(sizes)))
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for curve in curves:
        ax.plot(sizes, curve, color="0.8", lw=0.8)
    ax.plot(sizes, mean, "o-", color="C0", label=f"mean samples-to-prune N* ({len(curves)} seeds)")
    ax.plot(sizes, scale * sizes**slope, ":", color="C0", label=f"fit  {scale:.2f} |Z|^{slope:.2f}")
    ax.plot(sizes, [prune_bound(int(n), cfg.sigma, cfg.delta) for n in sizes], "--", color="C3",
            label=f"bound |Z| ln(|Z|/{cfg.delta:g}) / {cfg.sigma:g}")
    shape = sizes * np.log(sizes)
    ax.plot(sizes, shape * np.exp(np.mean(np.log(mean / shape))), "-.", color="C2", label="|Z| ln|Z| (scaled)")
    ax.set(xscale="log", yscale="log", xlabel="decision-set size |Z|", ylabel="expert samples",
           title="Thm 3.5: expert samples until pruning is safe")
    ax.set_xticks(sizes, [f"{n:g}" for n in sizes], minor=False)
    ax.set_xticks([], minor=True)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_convergence(record: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    cfg = from_dict(TheoryConfig, record["config"], "record.json: config")
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    horizons, bounds = [], []
    for i, (setting, runs) in enumerate(_settings(record["convergence"]).items()):
        horizon = [1 / (1 - r["gamma_bar"]) for r in runs]
        ax.scatter(horizon, [r["iterations"] for r in runs], color=f"C{i}", marker="s" if i == 0 else "o",
                   label=f"{setting} (gamma_bar {np.mean([r['gamma_bar'] for r in runs]):.3f})")
        horizons.append(np.mean(horizon))
        bounds.append(np.mean([iteration_bound(r["gamma_bar"], r["r_max"], cfg.eps) for r in runs]))
    order = np.argsort(horizons)
    ax.plot(np.array(horizons)[order], np.array(bounds)[order], "k--",
            label="bound 1/(1-gamma_bar) ln(R_max/(eps(1-gamma_bar)))")
    ax.set(xlabel="effective horizon 1/(1 - gamma_bar)", ylabel=f"value-iteration iterations to eps = {cfg.eps:g}",
           title="Thm 3.6: options shorten the horizon and speed up convergence")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
