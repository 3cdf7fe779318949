"""TGDP vs fine-tuning vs target-only on the paper's 2-D Gaussian-mixture simulation (README: TGDP, exactly).

    OMP_NUM_THREADS=1 python benchmarks/gmm_transfer.py            # writes benchmarks/results/gmm_transfer.{json,md}
    OMP_NUM_THREADS=1 python benchmarks/gmm_transfer.py --quick    # one seed, n = 100, short budgets; prints only

Ouyang et al., "Transfer Learning for Diffusion Models", NeurIPS 2024 (TGDP), Gaussian-mixture simulation:
source modes ±(0.5, 0.5), target modes ±(0.5, −0.5), covariance 0.1·I, 10,000 source samples and n target
samples, one label. The source ε is exact (`models.gmm`), so TGDP is judged on the transfer step alone:

    tgdp             the project's default estimator: the time-dependent classifier c'(x_t, t) trained on
                     balanced noised source vs target points, log h = logit c', sampled with
                     ε̃ = ε_source − σ_t ∇ log h (`models.tgdp_transfer`, estimator "time_classifier")
    tgdp_regression  the paper's estimator: c(x_0) → 2-fold cross-fitted, clipped r → h_ψ regressed on r
                     + η₁ cycle (against c') + η₂ consistency, loss terms on one gradient scale
    finetune         an MLP ε-network distilled from the exact source ε, then all weights trained on the n points
    target_only      the same MLP ε-network trained from scratch on the n target points

No method sees held-out target points (n = 10 leaves none), so TGDP's fade below t_min is off here and
every budget is fixed. Every fit draws `samples` points with DDPM (Ho et al. 2020 Alg. 2, respaced) and is
scored against as many exact target draws by the unbiased MMD² (Gretton et al. 2012, eq. 3) with a fixed RBF
bandwidth, and by the share of points nearer a target mode than a source mode (`models.gmm.target_mode_share`;
exact target draws give ≈ 0.89). Reference rows, the same at every n: exact target draws (the MMD noise
floor), the exact source without transfer, and the exact source guided by the exact h = q_t/p_t (what TGDP
would reach with a perfect h). Intervals are 95% t-intervals over seeds; TGDP against each baseline is also
compared per seed (the same data, target points and sampling noise), with a t-interval on the mean paired
difference of MMD². DDPM rather than DPM-Solver++ or DDIM: both deterministic
samplers start at t = T−1 of the cosine schedule, where x̂_0 = (x − σ ε̂)/α divides a learned network's ε error
by α_{T−1} ≈ 5e-5, and their first step carries it to the samples (MMD² 0.19 for a distilled source network that
DDPM samples at the noise floor); exact denoisers are immune, which is why the closed-form tests pass with them.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from harness import RESULTS, write_result

from ecg_tgdp.models import gmm
from ecg_tgdp.models.density_ratio import DomainTraining, cosine_lr_factor
from ecg_tgdp.models.guidance import guided_denoiser_from_log_h
from ecg_tgdp.models.samplers import DenoiserFn, sample
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.tgdp import GuidanceTraining
from ecg_tgdp.models.tgdp_transfer import TGDPSettings, fit_tgdp
from ecg_tgdp.models.unet import timestep_embedding

METHODS = ("tgdp", "tgdp_regression", "finetune", "target_only")
BASELINES = ("finetune", "target_only")
REFERENCES = ("exact_target", "source_no_transfer", "exact_h")
DEFAULT_OUT = RESULTS / "gmm_transfer"


@dataclass
class Settings:
    """Every knob of the benchmark; saved in the JSON beside the numbers."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # each seed draws its own source, target and reference points and inits
    n_targets: tuple[int, ...] = (10, 100, 1000)  # a smaller n takes the first rows of the largest n's draw
    n_source: int = 10_000
    samples: int = 2000  # generated points per fit, and exact target points they are compared with
    sampler_steps: int = 100  # DDPM steps (respaced), the same for every method
    mmd_bandwidth: float = 0.5  # fixed RBF length ℓ, exp(−‖x − x'‖²/2ℓ²): half the source-to-target mode distance,
    #                             one metric for every method (a median heuristic would move with the samples)
    net_width: int = 64  # c(x_0), c'(x_t, t) and h_ψ: `NetConfig(kind="mlp")`, FiLM-conditioned on t
    net_depth: int = 3
    domain_steps: int = 500  # c and c', balanced batches of 256, AdamW lr 1e-3 cosine-decayed (`DomainTraining`);
    #                          chosen at seeds 0-2, n = 10: 300 / 500 / 1000 steps gave MMD² 0.028 / 0.031 / 0.037
    guidance_steps: int = 800  # h_ψ, AdamW lr 1e-3 cosine-decayed, no gradient clipping (`GuidanceTraining`)
    guidance_batch: int = 256  # source points per step, and target points per step for the regularizers
    r_max: float = 1e3  # r clipped to [1e-3, r_max] on the source points, c'/(1 − c') likewise in the cycle term
    eta_cycle: float = 1.0  # η₁
    eta_consistency: float = 1.0  # η₂
    eps_width: int = 128  # the ε-network of finetune and target_only
    eps_depth: int = 3
    eps_batch: int = 256
    distill_steps: int = 1500  # source ε-network regressed on the exact source ε at noised source points
    distill_lr: float = 3e-3  # also target_only's lr: at 1e-3 target_only misses n = 1000's modes after 2000 steps
    finetune_steps: int = 1800  # the same budget as target_only; fixed, no early stopping (n = 10 has no held-out)
    finetune_lr: float = 1e-3  # a third of the source lr; at 3e-4 fine-tuning stays between the source and target modes
    target_only_steps: int = 1800


QUICK = {"seeds": (0,), "n_targets": (100,), "samples": 1000, "sampler_steps": 50, "domain_steps": 200,
         "guidance_steps": 200, "distill_steps": 300, "finetune_steps": 300, "target_only_steps": 300}


# --- the ε-network of the fine-tuning and target-only baselines ------------------------------------------------

class EpsMLP(nn.Module):
    """ε_θ(x_t, t) for 2-D points x [B, 1, 2]: an MLP on x and a sinusoidal time embedding (Ho et al. 2020 §3.3)."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        layers: list[nn.Module] = [nn.Linear(2 + width, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        self.body = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """x [B, 1, 2], t [B] long, y [B] (one label: unused) → ε [B, 1, 2]."""
        emb = self.time_mlp(timestep_embedding(t, self.width))
        return self.body(torch.cat([x.reshape(len(x), 2), emb], dim=1)).view_as(x)


def train_eps(model: EpsMLP, schedule: NoiseSchedule, x0: Tensor, *, steps: int, lr: float, batch_size: int,
              seed: int, teacher: DenoiserFn | None = None) -> EpsMLP:
    """AdamW on Ho et al. 2020 eq. 14 over points x0 [N, 1, 2], lr cosine-decayed to lr/10. With `teacher`, the
    regression target is the teacher's ε(x_t, t), not the drawn ε: the same minimizer E[ε | x_t] (distillation)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    labels = torch.zeros(batch_size, dtype=torch.long)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine_lr_factor(step, steps, 0.1)
        x = x0[torch.randint(len(x0), (batch_size,), generator=generator)]
        t = torch.randint(schedule.num_steps, (batch_size,), generator=generator)
        eps = torch.randn(x.shape, generator=generator)
        x_t = schedule.add_noise(x, eps, t)
        goal = eps if teacher is None else teacher(x_t, t, labels)
        loss = F.mse_loss(model(x_t, t, labels), goal)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


# --- TGDP with MLP networks on 2-D points -----------------------------------------------------------------------

def tgdp_settings(settings: Settings, estimator: str, seed: int) -> TGDPSettings:
    """`models.tgdp_transfer` settings for points [N, 1, 2]: MLP networks, the benchmark's budgets."""
    domain = DomainTraining(steps=settings.domain_steps, seed=seed)
    guidance = GuidanceTraining(steps=settings.guidance_steps, batch_size=settings.guidance_batch,
                                eta_cycle=settings.eta_cycle, eta_consistency=settings.eta_consistency,
                                r_max=settings.r_max, seed=seed)
    return TGDPSettings(estimator=estimator, network="mlp", width=settings.net_width, depth=settings.net_depth,
                        time_domain=replace(domain, seed=seed + 1), domain=domain, guidance=guidance)


def fit_tgdp_points(source_x: Tensor, target_x: Tensor, settings: Settings, estimator: str,
                    seed: int) -> dict:
    """A TGDP fit on points: {"denoiser": ε̃, ratio diagnostics}."""
    source, _ = gmm.paper_mixtures()
    schedule = NoiseSchedule.cosine()
    source_eps = gmm.exact_denoiser(source, schedule)
    torch.manual_seed(seed)
    fit = fit_tgdp(source_eps, schedule, (source_x, _labels(source_x)), (target_x, _labels(target_x)),
                   tgdp_settings(settings, estimator, seed), num_classes=1)
    diagnostics = fit.diagnostics.get("regression", fit.diagnostics)
    return {"denoiser": guided_denoiser_from_log_h(source_eps, fit.log_h, schedule, 1.0),
            "ess_share": diagnostics["ess_share"], "clean_auroc_in_sample": diagnostics["clean"]["auroc"]}


def _labels(x: Tensor) -> Tensor:
    return torch.zeros(len(x), dtype=torch.long)


# --- metrics ----------------------------------------------------------------------------------------------------

def mmd2(x: Tensor, y: Tensor, bandwidth: float) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between points x [N, 2] and y [M, 2], RBF kernel of length
    `bandwidth`; its mean is 0 when x and y share a distribution, so single values can be negative."""
    def mean_kernel(a: Tensor, b: Tensor, same: bool) -> Tensor:
        k = torch.exp(-torch.cdist(a, b).square() / (2 * bandwidth ** 2))
        return (k.sum() - k.diagonal().sum()) / (len(a) * (len(a) - 1)) if same else k.mean()

    x, y = x.reshape(-1, 2).double(), y.reshape(-1, 2).double()
    return (mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False)).item()


def score(points: Tensor, reference: Tensor, settings: Settings) -> dict[str, float]:
    """MMD² to the exact target draws `reference` [M, 2] and the target-mode share of points [N, 1, 2]."""
    source, target = gmm.paper_mixtures()
    return {"mmd2": mmd2(points, reference, settings.mmd_bandwidth),
            "target_mode_share": gmm.target_mode_share(points, source, target)}


def draw(denoiser: DenoiserFn, schedule: NoiseSchedule, settings: Settings, seed: int) -> Tensor:
    """`settings.samples` points [N, 1, 2] by DDPM; one seed gives every method of a run the same noise."""
    n = settings.samples
    return sample(denoiser, schedule, (n, 1, 2), torch.zeros(n, dtype=torch.long), sampler="ddpm",
                  steps=settings.sampler_steps, generator=torch.Generator().manual_seed(seed))


# --- one seed ---------------------------------------------------------------------------------------------------

def run_seed(seed: int, settings: Settings, schedule: NoiseSchedule) -> dict[str, dict[str, dict[str, float]]]:
    """{method or reference: {str(n), or "any" for a reference: {metric: value}}} for one seed."""
    source, target = gmm.paper_mixtures()
    data = torch.Generator().manual_seed(seed)
    source_x = source.sample(settings.n_source, data)[:, None]  # [N, 1, 2], as the samplers shape points
    target_pool = target.sample(max(settings.n_targets), data)[:, None]
    reference = target.sample(settings.samples, data)
    source_eps = gmm.exact_denoiser(source, schedule)
    sampling_seed = 1000 + seed
    exact_h = guided_denoiser_from_log_h(source_eps, gmm.exact_log_h_fn(source, target, schedule), schedule, 1.0)
    results: dict[str, dict[str, dict[str, float]]] = {
        "exact_target": {"any": score(target.sample(settings.samples, data)[:, None], reference, settings)},
        "source_no_transfer": {"any": score(draw(source_eps, schedule, settings, sampling_seed), reference, settings)},
        "exact_h": {"any": score(draw(exact_h, schedule, settings, sampling_seed), reference, settings)},
    }
    torch.manual_seed(seed)
    pretrained = train_eps(EpsMLP(settings.eps_width, settings.eps_depth), schedule, source_x,
                           steps=settings.distill_steps, lr=settings.distill_lr, batch_size=settings.eps_batch,
                           seed=seed, teacher=source_eps)
    results["distilled_source_network"] = {"any": score(draw(pretrained, schedule, settings, sampling_seed),
                                                        source.sample(settings.samples, data), settings)}
    for n in settings.n_targets:
        scores = run_transfer(source_x, target_pool[:n], pretrained, schedule, settings, seed)
        for method, values in scores.items():
            values.update(score(draw(values.pop("denoiser"), schedule, settings, sampling_seed), reference, settings))
            results.setdefault(method, {})[str(n)] = values
    return results


def run_transfer(source_x: Tensor, target_x: Tensor, pretrained: EpsMLP, schedule: NoiseSchedule,
                 settings: Settings, seed: int) -> dict[str, dict]:
    """Each method fitted on one target set target_x [n, 1, 2]: {method: {"denoiser": ε fn, other diagnostics}}."""
    fits: dict[str, dict] = {
        "tgdp": fit_tgdp_points(source_x, target_x, settings, "time_classifier", seed),
        "tgdp_regression": fit_tgdp_points(source_x, target_x, settings, "regression", seed),
    }
    finetuned = EpsMLP(settings.eps_width, settings.eps_depth)
    finetuned.load_state_dict(pretrained.state_dict())
    fits["finetune"] = {"denoiser": train_eps(finetuned, schedule, target_x, steps=settings.finetune_steps,
                                              lr=settings.finetune_lr, batch_size=settings.eps_batch, seed=seed)}
    torch.manual_seed(seed)
    fits["target_only"] = {"denoiser": train_eps(EpsMLP(settings.eps_width, settings.eps_depth), schedule, target_x,
                                                 steps=settings.target_only_steps, lr=settings.distill_lr,
                                                 batch_size=settings.eps_batch, seed=seed)}
    return fits


# --- summary and report -----------------------------------------------------------------------------------------

def interval(values: list[float]) -> dict[str, float | None]:
    """Mean and 95% t-interval over seeds (Student's t with k − 1 degrees of freedom); no interval for k = 1."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "lo": None, "hi": None}
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def summarize(per_seed: dict[str, dict], settings: Settings) -> dict[str, dict[str, dict[str, dict]]]:
    """{row: {str(n): {metric: interval}}}; a reference row's "any" value is shown under every n."""
    summary: dict[str, dict[str, dict[str, dict]]] = {}
    seeds = [str(seed) for seed in settings.seeds]
    for row in REFERENCES + ("distilled_source_network",) + METHODS:
        summary[row] = {}
        for n in map(str, settings.n_targets):
            column = n if n in per_seed[seeds[0]][row] else "any"
            summary[row][n] = {metric: interval([per_seed[seed][row][column][metric] for seed in seeds])
                               for metric in per_seed[seeds[0]][row][column]}
    return summary


def markdown(summary: dict, settings: Settings, seconds: float) -> str:
    """Rows methods, columns n for MMD² then for the target-mode share, each "mean [lo, hi]"."""
    ns = [str(n) for n in settings.n_targets]
    header = ["method"] + [f"MMD² n={n}" for n in ns] + [f"target share n={n}" for n in ns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in METHODS + REFERENCES:
        cells = [_cell(summary[row][n]["mmd2"], 4) for n in ns] + [_cell(summary[row][n]["target_mode_share"], 3)
                                                                   for n in ns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    caption = (f"TGDP Gaussian-mixture simulation (Ouyang et al. 2024), {len(settings.seeds)} seeds, "
               f"{settings.samples} DDPM samples ({settings.sampler_steps} steps) per fit; MMD² unbiased, RBF "
               f"ℓ = {settings.mmd_bandwidth}; mean [95% t-interval over seeds]. Reference rows (exact_target, "
               f"source_no_transfer, exact_h) do not depend on n. Run time {seconds / 60:.1f} min. "
               "Reproduce: `OMP_NUM_THREADS=1 python benchmarks/gmm_transfer.py`.")
    return caption + "\n\n" + "\n".join(lines) + "\n"


def _cell(value: dict, digits: int) -> str:
    if value["lo"] is None:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} [{value['lo']:.{digits}f}, {value['hi']:.{digits}f}]"


def paired_differences(per_seed: dict[str, dict], settings: Settings) -> dict[str, dict[str, dict]]:
    """{n: {f"{tgdp}-{baseline}": interval of the per-seed MMD² difference}} for each TGDP variant and baseline."""
    seeds = [str(seed) for seed in settings.seeds]
    out: dict[str, dict[str, dict]] = {}
    for n in map(str, settings.n_targets):
        for tgdp in ("tgdp", "tgdp_regression"):
            for baseline in BASELINES:
                differences = [per_seed[s][tgdp][n]["mmd2"] - per_seed[s][baseline][n]["mmd2"] for s in seeds]
                out.setdefault(n, {})[f"{tgdp}-{baseline}"] = {**interval(differences),
                                                              "tgdp_lower_at_seeds": sum(d < 0 for d in differences)}
    return out


def comparisons(differences: dict[str, dict[str, dict]], settings: Settings) -> list[str]:
    """One line per (n, TGDP variant, baseline): the paired MMD² difference and whether its interval excludes 0."""
    lines = []
    for n, by_pair in differences.items():
        for pair, d in by_pair.items():
            tgdp, baseline = pair.split("-")
            if d["lo"] is None:
                verdict = "one seed: no interval"
            elif d["hi"] < 0:
                verdict = f"{tgdp} lower (interval below 0)"
            elif d["lo"] > 0:
                verdict = f"{tgdp} higher (interval above 0)"
            else:
                verdict = "no difference shown (interval contains 0)"
            lines.append(f"n={n}: MMD²({tgdp}) − MMD²({baseline}) = {d['mean']:+.4f} "
                         f"[{_bound(d['lo'])}, {_bound(d['hi'])}], lower at {d['tgdp_lower_at_seeds']} of "
                         f"{len(settings.seeds)} seeds: {verdict}")
    return lines


def paired_markdown(differences: dict[str, dict[str, dict]], settings: Settings) -> str:
    """Rows (TGDP variant − baseline), columns n: mean paired MMD² difference [95% t-interval] (seeds lower)."""
    ns = [str(n) for n in settings.n_targets]
    lines = ["| paired MMD² difference | " + " | ".join(f"n={n}" for n in ns) + " |", "|" + "---|" * (len(ns) + 1)]
    for pair in differences[ns[0]]:
        cells = []
        for n in ns:
            d = differences[n][pair]
            cells.append(f"{d['mean']:+.4f} [{_bound(d['lo'])}, {_bound(d['hi'])}] ({d['tgdp_lower_at_seeds']}/"
                         f"{len(settings.seeds)})")
        lines.append(f"| {pair.replace('-', ' − ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bound(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4f}"


NOTES: list[str] = []  # the reading of the full default run, written into the JSON with the default settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--n-targets", type=int, nargs="+")
    parser.add_argument("--sampler-steps", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--quick", action="store_true", help="one seed, n = 100, short budgets; writes only with --out")
    parser.add_argument("--out", type=Path, help=f"output stem (.json and .md); default {DEFAULT_OUT} unless --quick")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a long training shares this machine
    settings = replace(Settings(), **QUICK) if args.quick else Settings()
    overrides = {"seeds": args.seeds and tuple(args.seeds), "n_targets": args.n_targets and tuple(args.n_targets),
                 "sampler_steps": args.sampler_steps, "samples": args.samples}
    settings = replace(settings, **{key: value for key, value in overrides.items() if value is not None})
    out = args.out or (None if args.quick else DEFAULT_OUT)

    started = time.perf_counter()
    schedule = NoiseSchedule.cosine()
    per_seed = {}
    for seed in settings.seeds:
        per_seed[str(seed)] = run_seed(seed, settings, schedule)
        print(f"seed {seed} done at {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    summary = summarize(per_seed, settings)
    differences = paired_differences(per_seed, settings)
    table = markdown(summary, settings, seconds) + "\n" + paired_markdown(differences, settings)
    print(table + "\n" + "\n".join(comparisons(differences, settings)))
    if out is None:
        return
    report = {"benchmark": "gmm_transfer", "settings": asdict(settings), "schedule": "cosine, T = 1000",
              "seconds": round(seconds, 1), "notes": NOTES if settings == Settings() else [],
              "comparisons": comparisons(differences, settings), "paired_differences": differences,
              "summary": summary, "per_seed": per_seed}
    write_result(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
