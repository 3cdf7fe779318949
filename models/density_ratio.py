"""TGDP's density ratio r = q/p from a domain classifier, and the small conditioned network it shares.

A classifier c(x, y) = P(target | x, y) trained with binary cross-entropy on source vs target windows
is, at its optimum, c/(1 − c) = (n_t q(x, y)) / (n_s p(x, y)) for pools of n_s source and n_t target
windows drawn in proportion, so r = exp(logit) · n_s/n_t; batches balanced between the domains drop
the factor (TGDP §3, README: TGDP, exactly, step 1). The classifier sees the label, so r is the joint ratio of (x, y);
the label-prior part is constant in x and leaves ∇ log h unchanged. The time-dependent classifier
c'(x_t, y, t) of the cycle regularizer is the same network with a time embedding, trained on noised
windows (README: TGDP, exactly, step 3).

`ConditionedNet` is the one backbone of the domain classifiers and of the guidance network: a small
conv net for windows [B, leads, T] or an MLP for vectors [B, D] (or [B, 1, D]), conditioned on the label
and optionally on t by scale-shift (FiLM, as in the U-Net's residual blocks).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.settings import DomainTraining
from ecg_tgdp.models.unet import timestep_embedding

NET_KINDS = ("conv", "mlp")


@dataclass(frozen=True)
class NetConfig:
    """Shape of a TGDP network (domain classifier or guidance network); saved with its weights."""

    kind: str = "conv"  # "conv" for windows [B, leads, T]; "mlp" for vectors [B, D] or [B, C, L] flattened
    in_dim: int = 1  # conv: leads (input channels); mlp: features per example after flattening (C·L)
    num_classes: int = 3  # labels 0..num_classes-1 (no null class: TGDP ratios are per label)
    width: int = 64  # channels (conv) or hidden units (mlp); also the embedding width
    depth: int = 3  # conv stages (each halves T) or hidden MLP layers
    time_conditioned: bool = False  # True for c'(x_t, y, t) and h_ψ(x_t, y, t); False for c(x_0, y)
    label_aware: bool = True  # False: y is ignored (one shared embedding), c(x) and h(x_t, t) of the marginals

    def __post_init__(self) -> None:
        if self.kind not in NET_KINDS:
            raise ValueError(f"NetConfig.kind must be one of {NET_KINDS}, got {self.kind!r}")
        if min(self.in_dim, self.num_classes, self.width, self.depth) < 1:
            raise ValueError(f"NetConfig: in_dim, num_classes, width and depth must be >= 1, got {self}")
        if self.kind == "conv" and self.width % 8:
            raise ValueError(f"NetConfig: conv width must be divisible by 8 (GroupNorm groups), got {self.width}")


class _FiLMBlock(nn.Module):
    """layer(SiLU(norm(h))), then scale-shift by the label (+ time) embedding (FiLM, Perez et al. 2018)."""

    def __init__(self, layer: nn.Module, norm: nn.Module, width: int) -> None:
        super().__init__()
        self.norm, self.layer, self.emb = norm, layer, nn.Linear(width, 2 * width)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h [B, width] or [B, width, L], emb [B, width] → like h (L halved by a pooling layer)."""
        h = self.layer(F.silu(self.norm(h)))
        scale, shift = self.emb(F.silu(emb)).chunk(2, dim=1)
        shape = (len(h), -1) + (1,) * (h.ndim - 2)
        return h * (1 + scale.view(shape)) + shift.view(shape)


class ConditionedNet(nn.Module):
    """f(x, y[, t]) → one real number per example; x [B, leads, T] (conv) or [B, ...] flattened to in_dim (mlp)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.label_emb = nn.Embedding(config.num_classes if config.label_aware else 1, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w)) if config.time_conditioned else None
        if config.kind == "conv":
            self.stem = nn.Conv1d(config.in_dim, w, 7, padding=3)
            self.blocks = nn.ModuleList(_FiLMBlock(
                nn.Sequential(nn.Conv1d(w, w, 5, padding=2), nn.AvgPool1d(2, ceil_mode=True)), nn.GroupNorm(8, w), w)
                for _ in range(config.depth))
        else:
            self.stem = nn.Linear(config.in_dim, w)
            self.blocks = nn.ModuleList(_FiLMBlock(nn.Linear(w, w), nn.Identity(), w) for _ in range(config.depth))
        self.head = nn.Linear(w, 1)

    def forward(self, x: Tensor, y: Tensor, t: Tensor | None = None) -> Tensor:
        """x as configured, labels y [B] long, timesteps t [B] (required iff time-conditioned) → [B]."""
        if (t is None) == self.config.time_conditioned:
            need = "needs timesteps t" if self.config.time_conditioned else "is not time-conditioned; pass no t"
            raise ValueError(f"ConditionedNet {need}")
        emb = self.label_emb(y if self.config.label_aware else torch.zeros_like(y))
        if self.time_mlp is not None:
            emb = emb + self.time_mlp(timestep_embedding(t, self.config.width))
        h = self.stem(x if self.config.kind == "conv" else x.reshape(len(x), -1))
        for block in self.blocks:
            h = block(h, emb)
        if h.ndim == 3:
            h = h.mean(dim=-1)  # global average over time: any window length
        return self.head(F.silu(h)).squeeze(1)


class DomainClassifier(nn.Module):
    """c(x_0, y) or, time-conditioned, c'(x_t, y, t) = P(target | ·) as a logit; remembers how it was trained.

    The pool sizes and the balancing are buffers, so a checkpoint's state dict turns logits into ratios alone.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.net = ConditionedNet(config)
        nn.init.zeros_(self.net.head.weight)  # starts at logit 0: r = prior factor everywhere
        nn.init.zeros_(self.net.head.bias)
        self.register_buffer("pool_sizes", torch.ones(2, dtype=torch.long))  # (n_source, n_target) it was trained on
        self.register_buffer("balanced", torch.ones((), dtype=torch.bool))

    @property
    def config(self) -> NetConfig:
        return self.net.config

    def forward(self, x: Tensor, y: Tensor, t: Tensor | None = None) -> Tensor:
        """Logit of P(target | x, y[, t]) [B]."""
        return self.net(x, y, t)

    def ratio(self, x: Tensor, y: Tensor, t: Tensor | None = None) -> Tensor:
        """Unclipped r = c/(1 − c) · prior factor [B] (`ratio_from_logits`), no gradient."""
        with torch.no_grad():
            n_source, n_target = self.pool_sizes.tolist()
            return ratio_from_logits(self(x, y, t), n_source, n_target, bool(self.balanced))


def ratio_from_logits(logits: Tensor, n_source: int, n_target: int, balanced: bool) -> Tensor:
    """r = c/(1 − c) · n_source/n_target = exp(logit) · n_s/n_t [B] from logits [B]; no factor for balanced batches.

    The logit is log(c/(1 − c)); working in log space keeps r finite for any |logit| up to float range.
    """
    if min(n_source, n_target) < 1:
        raise ValueError(f"pool sizes must be >= 1, got n_source={n_source}, n_target={n_target}")
    log_prior = 0.0 if balanced else math.log(n_source / n_target)
    return torch.exp(logits + log_prior)


def clip_ratios(r: Tensor, r_min: float = 1e-3, r_max: float = 1e3) -> tuple[Tensor, float]:
    """r clipped to [r_min, r_max] and the share of entries that were clipped (to be logged)."""
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    clipped = (r < r_min) | (r > r_max)
    return r.clamp(r_min, r_max), clipped.float().mean().item()


def self_normalize(r: Tensor) -> Tensor:
    """r / mean(r) over the source set, since E_p[q/p] = 1 (self-normalized importance weights); r [N] → [N]."""
    mean = r.double().mean()
    if not torch.isfinite(mean) or mean <= 0:
        raise ValueError(f"cannot self-normalize ratios with mean {mean.item()}; clip them first")
    return (r / mean).to(r.dtype)


@torch.no_grad()
def source_ratios(classifier: DomainClassifier, x: Tensor, y: Tensor, *, r_min: float = 1e-3, r_max: float = 1e3,
                  normalize: bool = False, batch_size: int = 1024,
                  device: torch.device | str = "cpu") -> tuple[Tensor, float]:
    """r(x_0, y) [N] on CPU for every source window x [N, ...], y [N], clipped to [r_min, r_max] and, with
    `normalize`, self-normalized to mean 1; also the share clipped (log it: a high share means p and q barely
    overlap and h will be learned from a few windows)."""
    classifier.to(device).eval()
    r = torch.cat([classifier.ratio(x[start:start + batch_size].float().to(device),
                                    y[start:start + batch_size].to(device)).cpu()
                   for start in range(0, len(x), batch_size)])
    r, clipped = clip_ratios(r, r_min, r_max)
    return (self_normalize(r) if normalize else r), clipped


@dataclass
class HeldOut:
    """Windows neither domain classifier trains on: for early stopping, temperature scaling and diagnostics.

    Scored balanced, the same number from each domain (as the classifiers are trained), `draws` noised
    copies per window with t uniform on 0..T−1 for a time-dependent classifier, from one seeded generator
    so every validation sees the same draws.
    """

    source_x: Tensor
    source_y: Tensor
    target_x: Tensor
    target_y: Tensor
    max_per_domain: int = 2000
    draws: int = 4
    seed: int = 0

    def noised(self, schedule: NoiseSchedule | None) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(x or x_t, y, t or None, domain) of the balanced held-out set; domain 1 = target."""
        generator = torch.Generator().manual_seed(self.seed)
        n = min(len(self.source_x), len(self.target_x), self.max_per_domain)
        xs, ys, domains = [], [], []
        for d, (x, y) in enumerate(((self.source_x, self.source_y), (self.target_x, self.target_y))):
            rows = torch.randperm(len(x), generator=generator)[:n]
            xs.append(x[rows].float())
            ys.append(y[rows].long())
            domains.append(torch.full((n,), float(d)))
        x, y, domain = torch.cat(xs), torch.cat(ys), torch.cat(domains)
        if schedule is None:
            return x, y, None, domain
        x, y, domain = (v.repeat_interleave(self.draws, 0) for v in (x, y, domain))
        t = torch.randint(schedule.num_steps, (len(x),), generator=generator)
        return schedule.add_noise(x, torch.randn(x.shape, generator=generator), t), y, t, domain


@torch.no_grad()
def domain_logits(classifier: DomainClassifier, x: Tensor, y: Tensor, t: Tensor | None = None, *,
                  batch_size: int = 1024, device: torch.device | str = "cpu") -> Tensor:
    """Logits [N] of P(target | x, y[, t]) on CPU, in batches; the classifier's train/eval mode is kept."""
    was_training = classifier.training
    classifier.to(device).eval()
    out = [classifier(x[s:s + batch_size].float().to(device), y[s:s + batch_size].to(device),
                      None if t is None else t[s:s + batch_size].to(device)).cpu()
           for s in range(0, len(x), batch_size)]
    classifier.train(was_training)
    return torch.cat(out)


def train_domain_classifier(
    classifier: DomainClassifier, source_x: Tensor, source_y: Tensor, target_x: Tensor, target_y: Tensor,
    settings: DomainTraining, *, schedule: NoiseSchedule | None = None, held_out: HeldOut | None = None,
    log: list[dict] | None = None, device: torch.device | str = "cpu",
) -> DomainClassifier:
    """Fit c(x_0, y), or with `schedule` the time-dependent c'(x_t, y, t), by BCE on source (0) vs target (1).

    x [N, leads, T] or [N, D], y [N] long. For c' both domains are noised by x_t = α_t x_0 + σ_t ε with t
    uniform on 0..T−1 and ε fresh each step, so source and target see the same distribution of t. With
    `held_out`, the held-out log-loss is computed every `val_every` steps, the best weights are kept and
    training stops after `patience` validations without improvement; `log` collects one row per validation
    (step, train_loss, val_log_loss). Returns the classifier in eval mode with its pool sizes and balancing
    recorded for `ratio`.
    """
    if (schedule is not None) != classifier.config.time_conditioned:
        raise ValueError("pass a schedule exactly when the classifier is time-conditioned (c'(x_t, y, t))")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.cat([source_x, target_x]).float()
    y = torch.cat([source_y, target_y]).long()
    domain = torch.cat([torch.zeros(len(source_x)), torch.ones(len(target_x))])
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    validation = None if held_out is None else held_out.noised(schedule)
    best_loss, best_state, waited, recent = math.inf, None, 0, []
    classifier.to(device).train()
    name = "time-dependent classifier c'" if schedule is not None else "domain classifier c"
    for step in tqdm(range(1, settings.steps + 1), desc=name, unit="step", leave=False, disable=None):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * cosine_lr_factor(step - 1, settings.steps, settings.min_lr_ratio)
        rows = _domain_batch(len(source_x), len(target_x), settings, generator)
        x0, labels, targets = x[rows], y[rows], domain[rows]
        t = None
        if schedule is not None:
            t = torch.randint(schedule.num_steps, (len(rows),), generator=generator)
            x0 = schedule.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
            t = t.to(device)
        logits = classifier(x0.to(device), labels.to(device), t)
        loss = F.binary_cross_entropy_with_logits(logits, targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
        if validation is None or step % settings.val_every:
            continue
        val_x, val_y, val_t, val_domain = validation
        val_loss = F.binary_cross_entropy_with_logits(domain_logits(classifier, val_x, val_y, val_t, device=device),
                                                      val_domain).item()
        if log is not None:
            log.append({"step": step, "train_loss": sum(recent) / len(recent), "val_log_loss": val_loss})
        recent = []
        if val_loss < best_loss:
            best_loss, best_state, waited = val_loss, copy.deepcopy(classifier.state_dict()), 0
        else:
            waited += 1
            if 0 < settings.patience <= waited:
                break
    if best_state is not None:
        classifier.load_state_dict(best_state)
    classifier.pool_sizes.copy_(torch.tensor([len(source_x), len(target_x)]))
    classifier.balanced.fill_(settings.balanced)
    return classifier.eval()


def cosine_lr_factor(step: int, steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier at update `step` (0-based) of `steps`: cosine from 1 down to min_ratio at the
    last update (SGDR without restarts, Loshchilov & Hutter 2017 eq. 5)."""
    progress = step / max(1, steps - 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _domain_batch(n_source: int, n_target: int, settings: DomainTraining, generator: torch.Generator) -> Tensor:
    """Row indices into cat(source, target): half from each domain when balanced, else uniform over the pool."""
    if not settings.balanced:
        return torch.randint(n_source + n_target, (settings.batch_size,), generator=generator)
    half = settings.batch_size // 2
    source_rows = torch.randint(n_source, (settings.batch_size - half,), generator=generator)
    target_rows = n_source + torch.randint(n_target, (half,), generator=generator)
    return torch.cat([source_rows, target_rows])
