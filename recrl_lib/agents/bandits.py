"""Contextual linear bandits over item feature vectors: LinUCB, linear Thompson sampling and
ε-greedy, one ridge regression per user, batched over users.

Item i has a feature vector x_i ∈ R^d: the recommender's text vectors reduced by PCA
(:func:`reduce_features`), plus a constant 1 (an intercept: the user's base click rate).
User u's expected reward for item i is modelled as x_iᵀθ_u, and θ_u is a ridge regression on
what u did with the items shown so far (reward r_t for item x_t):

    A_u = λI + Σ_t x_t x_tᵀ        [d, d]
    b_u = Σ_t r_t x_t              [d]
    θ̂_u = A_u⁻¹ (b_u + λ θ₀)       the minimiser of Σ_t (r_t − x_tᵀθ)² + λ‖θ − θ₀‖²

θ₀ = 0 is textbook ridge. By default θ₀ is the *pooled* estimate, the same ridge over every
user's data, so a user with little data is shrunk toward what the population likes instead of
toward 0 (empirical Bayes; a new or unknown user scores items by θ₀ alone). ``pooled=False``
gives the textbook rule. The three rules differ only in how they score item i for user u:

- **LinUCB** (Li et al., 2010): x_iᵀθ̂_u + α √(x_iᵀ A_u⁻¹ x_i) — the mean plus a bonus as
  wide as the uncertainty in the item's direction (optimism in the face of uncertainty).
- **linear Thompson sampling** (Agrawal & Goyal, 2013): x_iᵀθ̃_u with θ̃_u ~ N(θ̂_u, v² A_u⁻¹),
  a fresh draw at every call: the posterior of Bayesian linear regression with noise
  variance v² and prior N(θ₀, v²/λ · I).
- **ε-greedy**: with probability ε a uniformly random valid item, else the best mean x_iᵀθ̂_u.

The statistics A, b are kept on the CPU in float64 (exact, deterministic accumulation); what
scoring reads (θ̂, A⁻¹, a root of A⁻¹) lives on the features' device in float32. A bandit's
:meth:`~LinearBandit.policy` is a :class:`~recrl_lib.agents.Policy` that reads who logged in
from ``obs["user"]`` (``SimulatorConfig(observe_user=True)``).
"""

from __future__ import annotations

import torch

from recrl_lib.agents.baselines import Observation, Policy
from recrl_lib.agents.session import user_rows


def reduce_features(vectors: torch.Tensor, d: int) -> torch.Tensor:
    """[N, F] item vectors -> [N, d]: their first d principal components, scaled so that the
    mean row norm is 1 (so λ weighs like one observation). Deterministic: an exact SVD of the
    centred matrix, each component's sign fixed so that its largest loading is positive.

        X − mean = U S Vᵀ,   Z = (X − mean) V[:, :d],   Z / mean_i ‖Z_i‖
    """
    if vectors.dim() != 2 or not vectors.is_floating_point():
        raise ValueError(
            f"vectors must be a [N, F] float tensor, got {vectors.dtype} {vectors.shape}"
        )
    n, f = vectors.shape
    if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= min(n, f):
        raise ValueError(f"d must be an int in 1..min(N, F) = {min(n, f)}, got {d!r}")
    x = vectors.detach().double().cpu()
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    components = vh[:d]  # [d, F]
    largest = components.abs().argmax(1)
    components = components * components[torch.arange(d), largest].sign()[:, None]
    z = x @ components.T
    z = z / z.norm(dim=1).mean().clamp(min=1e-12)
    return z.float().to(vectors.device)


def linucb_update(A, b, x, r):
    """One observation for one user: (A [d, d], b [d]) -> (A + x xᵀ, b + r x), new arrays
    (torch or NumPy alike). ``x`` [d]: the shown item's features; ``r``: its reward."""
    return A + x[:, None] * x[None, :], b + r * x


def linucb_scores(A, b, X, alpha: float) -> torch.Tensor:
    """LinUCB's score of every item: x_iᵀθ̂ + α √(x_iᵀ A⁻¹ x_i), θ̂ = A⁻¹ b.

    A [d, d] (or [..., d, d] for a batch of users), b [d] (or [..., d]), X [N, d] -> [N]
    (or [..., N]). Textbook ridge (no pooled prior); float64 unless all inputs are float32.
    """
    A, b, X = (torch.as_tensor(t) for t in (A, b, X))
    d = X.shape[-1]
    if X.dim() != 2 or A.shape[-2:] != (d, d) or b.shape != A.shape[:-1]:
        raise ValueError(
            f"need A [..., d, d], b [..., d], X [N, d] with one d, got "
            f"{tuple(A.shape)}, {tuple(b.shape)}, {tuple(X.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(A.dtype, b.dtype), X.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float64
    A, b, X = A.to(dtype), b.to(dtype), X.to(dtype)
    theta = torch.linalg.solve(A, b[..., None])[..., 0]  # [..., d]
    bonus = ((X @ torch.linalg.inv(A)) * X).sum(-1)  # [..., N]: x_iᵀ A⁻¹ x_i
    return theta @ X.T + alpha * bonus.clamp(min=0).sqrt()


def explore_scores(
    scores: torch.Tensor, epsilon: float, generator: torch.Generator
) -> torch.Tensor:
    """ε-greedy on scores [B, N]: each row, with probability ε, is replaced by uniform random
    scores, whose best valid item is then a uniformly random valid item. Draws the same amount
    of randomness whatever happens, so one seed gives one stream."""
    B, N = scores.shape
    explore = torch.rand(B, 1, generator=generator, device=scores.device) < epsilon
    noise = torch.rand(B, N, generator=generator, device=scores.device)
    return torch.where(explore, noise, scores)


class LinearBandit:
    """Per-user ridge regression on item ``features`` [N, F] for ``n_users`` known users
    (ids 0..n_users − 1; -1 is an unknown user, scored by the prior), greedy on the mean.
    See the module docstring; the subclasses change only :meth:`scores`."""

    name = "linear greedy"
    oracle = False

    def __init__(
        self,
        features: torch.Tensor,
        n_users: int,
        *,
        lam: float = 1.0,
        pooled: bool = True,
        intercept: bool = True,
        seed: int = 0,
    ):
        if features.dim() != 2 or not features.is_floating_point() or len(features) == 0:
            raise ValueError(
                f"features must be a [N, F] float tensor (e.g. reduce_features(text, 16)), got "
                f"{features.dtype} {tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("features hold NaN or inf")
        if n_users < 1 or lam <= 0:
            raise ValueError(f"need n_users >= 1 and lam > 0, got {n_users} and {lam}")
        x = features.detach().float()
        if intercept:
            x = torch.cat([x, torch.ones(len(x), 1, device=x.device)], dim=1)
        self.features = x  # [N, d]
        self.device = x.device
        self.n_items, self.dim = x.shape
        self.n_users, self.lam, self.pooled, self.seed = n_users, lam, pooled, seed
        self._x64 = x.double().cpu()
        self._outer = (x[:, :, None] * x[:, None, :]).reshape(self.n_items, -1)  # [N, d²]
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.n_users} users, d = {self.dim})"

    def reset(self) -> None:
        """Forget every observation: A_u = λI, b_u = 0 for every user (row n_users: unknown)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        self.A = (self.lam * eye).repeat(self.n_users + 1, 1, 1)  # [U + 1, d, d], CPU float64
        self.b = torch.zeros(self.n_users + 1, self.dim, dtype=torch.float64)
        self.n_observations = 0
        self._version, self._fresh, self._cache = 0, -1, None

    @torch.no_grad()
    def update(self, users: torch.Tensor, items: torch.Tensor, rewards: torch.Tensor) -> None:
        """Add M observations at once: user ``users`` [M] was shown ``items`` [M] and got
        ``rewards`` [M]: A_u += Σ x xᵀ, b_u += Σ r x over each user's rows."""
        users, items = torch.as_tensor(users).cpu(), torch.as_tensor(items).cpu()
        rewards = torch.as_tensor(rewards).cpu().double()
        if not (users.dim() == 1 and users.shape == items.shape == rewards.shape):
            shapes = [tuple(t.shape) for t in (users, items, rewards)]
            raise ValueError(f"users, items, rewards must be [M] each, got {shapes}")
        if users.dtype.is_floating_point or items.dtype.is_floating_point:
            raise ValueError("users and items must be integer ids")
        if len(users) == 0:
            return
        if users.min() < 0 or users.max() >= self.n_users:
            raise ValueError(f"users must be known ids in 0..{self.n_users - 1}")
        if items.min() < 0 or items.max() >= self.n_items:
            raise ValueError(f"items must be ids in 0..{self.n_items - 1}")
        if not torch.isfinite(rewards).all():
            raise ValueError("rewards hold NaN or inf")
        x = self._x64[items]  # [M, d]
        self.A.index_add_(0, users, x[:, :, None] * x[:, None, :])
        self.b.index_add_(0, users, rewards[:, None] * x)
        self.n_observations += len(users)
        self._version += 1

    def prior_mean(self) -> torch.Tensor:
        """θ₀ [d] (float64): the pooled ridge over every user's data, or 0 if not ``pooled``:
        (λI + Σ_u Σ_t x xᵀ)⁻¹ Σ_u b_u."""
        if not self.pooled:
            return torch.zeros(self.dim, dtype=torch.float64)
        eye = torch.eye(self.dim, dtype=torch.float64)
        A_all = self.A[: self.n_users].sum(0) - (self.n_users - 1) * self.lam * eye
        return torch.linalg.solve(A_all, self.b[: self.n_users].sum(0))

    def _refresh(self) -> None:
        """θ̂ [U + 1, d], A⁻¹ [U + 1, d, d] and the root R = L⁻ᵀ (R Rᵀ = A⁻¹, A = L Lᵀ), once
        per change of the statistics."""
        if self._fresh == self._version:
            return
        L = torch.linalg.cholesky(self.A)
        target = self.b + self.lam * self.prior_mean()
        theta = torch.cholesky_solve(target[..., None], L)[..., 0]
        eye = torch.eye(self.dim, dtype=torch.float64).expand_as(L)
        root = torch.linalg.solve_triangular(L.mT, eye, upper=True)
        self.theta = theta.float().to(self.device)
        self.A_inv = (root @ root.mT).float().to(self.device)
        self.root = root.float().to(self.device)
        self._fresh, self._cache = self._version, None

    def rows(self, users: torch.Tensor) -> torch.Tensor:
        """User ids [B] (-1: unknown) -> rows of the tables [B] on the bandit's device."""
        users = torch.as_tensor(users, device=self.device)
        if users.dim() != 1 or users.dtype.is_floating_point:
            raise ValueError(f"users must be [B] integer ids, got {users.dtype} {users.shape}")
        if len(users) and (users.min() < -1 or users.max() >= self.n_users):
            raise ValueError(f"users must be ids in 0..{self.n_users - 1} or -1 (unknown)")
        return torch.where(users < 0, self.n_users, users.long())

    def mean_scores(self, users: torch.Tensor) -> torch.Tensor:
        """[B, N]: x_iᵀθ̂_u for each user of ``users`` [B] and every item."""
        self._refresh()
        return self.theta[self.rows(users)] @ self.features.T

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """[B, N]: the rule's score of every item for each user (here: the mean)."""
        return self.mean_scores(users)

    def _serve(self, name: str, scores) -> Policy:
        """A :class:`Policy` that scores items with ``scores(users)`` for the logged-in users."""

        def score(obs: Observation) -> torch.Tensor:
            user_rows(obs, self.n_users)  # a clear error without obs["user"] or for a stranger
            return scores(obs["user"][:, 0]).to(obs["items"].device)

        return Policy(name, score, self.n_items)

    def policy(self) -> Policy:
        """The bandit as a :class:`Policy`: its best valid item for the logged-in user. The
        policy reads the bandit live: an :meth:`update` changes what it recommends."""
        return self._serve(self.name, self.scores)

    def greedy_policy(self) -> Policy:
        """The ridge mean x_iᵀθ̂_u alone, without the rule's exploration."""
        return self._serve(f"{self.name}, greedy", self.mean_scores)


class EpsilonGreedyLinear(LinearBandit):
    """ε-greedy on the ridge mean: a uniformly random valid item with probability ε."""

    def __init__(self, features, n_users, *, epsilon: float = 0.1, **kwargs):
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        super().__init__(features, n_users, **kwargs)
        self.epsilon = epsilon
        self.name = f"linear ε-greedy (ε = {epsilon:g})"

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return explore_scores(self.mean_scores(users), self.epsilon, self.generator)


class LinUCB(LinearBandit):
    """LinUCB: x_iᵀθ̂_u + α √(x_iᵀ A_u⁻¹ x_i)."""

    def __init__(self, features, n_users, *, alpha: float = 1.0, **kwargs):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        super().__init__(features, n_users, **kwargs)
        self.alpha = alpha
        self.name = f"LinUCB (α = {alpha:g})"

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.rows(users)
        self._refresh()
        cache = self._cache
        if cache is not None and cache[0] == self.alpha and torch.equal(cache[1], rows):
            return cache[2]  # the same users again (every step of a round): nothing changed
        mean = self.theta[rows] @ self.features.T
        # x_iᵀ A⁻¹ x_i for all users and items as one product: vec(A⁻¹) · vec(x_i x_iᵀ)
        width = self.A_inv[rows].reshape(len(rows), -1) @ self._outer.T
        scores = mean + self.alpha * width.clamp(min=0).sqrt()
        self._cache = (self.alpha, rows.clone(), scores)
        return scores


class LinearThompson(LinearBandit):
    """Linear Thompson sampling: x_iᵀθ̃_u, θ̃_u = θ̂_u + v R_u z, z ~ N(0, I), R_u R_uᵀ = A_u⁻¹
    (so θ̃_u ~ N(θ̂_u, v² A_u⁻¹)); a fresh draw per user at every call, from the bandit's own
    generator."""

    def __init__(self, features, n_users, *, v: float = 0.5, **kwargs):
        if v < 0:
            raise ValueError(f"v must be >= 0, got {v}")
        super().__init__(features, n_users, **kwargs)
        self.v = v
        self.name = f"linear Thompson (v = {v:g})"

    def sample_theta(self, users: torch.Tensor) -> torch.Tensor:
        """[B, d]: one posterior draw θ̃_u for each user of ``users`` [B]."""
        rows = self.rows(users)
        self._refresh()
        z = torch.randn(len(rows), self.dim, 1, generator=self.generator, device=self.device)
        return self.theta[rows] + self.v * (self.root[rows] @ z)[..., 0]

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.sample_theta(users) @ self.features.T


# --------------------------------------------------------------------------- a known answer


def linear_bandit_problem(
    seed: int, *, n_arms: int = 30, dim: int = 6
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear bandit whose best arm is known: ``n_arms`` arms with unit feature vectors
    [n_arms, dim] and a unit θ [dim]; arm a pays x_aᵀθ plus noise, the best arm is
    argmax_a x_aᵀθ."""
    g = torch.Generator().manual_seed(seed)
    arms = torch.randn(n_arms, dim, generator=g)
    theta = torch.randn(dim, generator=g)
    return arms / arms.norm(dim=1, keepdim=True), theta / theta.norm()


def regret_curve(
    bandit: LinearBandit,
    arms: torch.Tensor,
    theta: torch.Tensor,
    *,
    rounds: int,
    replicates: int,
    noise: float = 0.3,
    seed: int = 0,
) -> torch.Tensor:
    """[rounds]: the mean regret x*ᵀθ − x_tᵀθ per round of ``bandit`` (built on ``arms``, for
    at least ``replicates`` users, ``pooled=False`` so that they share nothing) on the problem
    (``arms``, ``theta``), ``replicates`` independent copies at once, one update a round with
    reward x_tᵀθ + N(0, noise²). An arm may be pulled again (no session log)."""
    if bandit.n_users < replicates:
        raise ValueError(f"the bandit knows {bandit.n_users} users, fewer than {replicates}")
    g = torch.Generator().manual_seed(seed)
    mean = arms @ theta
    users = torch.arange(replicates)
    regret = torch.zeros(rounds)
    for t in range(rounds):
        chosen = bandit.scores(users).argmax(1).cpu()
        bandit.update(users, chosen, mean[chosen] + noise * torch.randn(replicates, generator=g))
        regret[t] = (mean.max() - mean[chosen]).mean()
    return regret
