"""Batched training: every config of a grid that shares a batch size, as one model.

``fit_grid(..., trainer="batched")`` lands here. The result is, config by
config, the serial reference's (``mirprobe.probes.training``): same scaler,
same initial weights, same batch indices, same dropout masks, same Adam
updates, same evaluations and early stopping, same restored state, same
records and the same selected config; only the order of floating-point
operations differs (matrix products over stacked weights), so curves agree to
float tolerance rather than bit for bit.

Why it is possible
------------------
Configs with the same ``(batch_size, seed)`` draw the same batch indices
(``random.Random(seed).sample`` every step) and, with the serial reference's
per-site dropout generators (see ``mirprobe.probes.training``), the same
uniform draws, which each config thresholds at its own dropout rate. So one
draw per step serves the whole group.

Layout
------
Configs are grouped by ``(batch_size, seed, hidden_sizes, eval_every)`` and
each group is trained on its own, one step at a time for all its configs.
Inside a group, configs sharing ``(standardize, dropout)`` form a *pack*:
they see the same dropped-out input batch, so the first layer of the whole
pack is one matrix product ``X_batch @ [W_1 | ... | W_k]^T``; later layers
are batched products (``torch.baddbmm``) over the pack. Parameters are
stacked config-first, ``(k, out, in)`` and ``(k, out)``, so every config's
slice is contiguous and in ``nn.Linear`` layout. Gradients are computed by
hand (the network is fixed: linear layers, ReLU, dropout; cross-entropy, BCE
with logits or MSE, each a per-config mean) into preallocated buffers. Each
step's dropout masks, ``(u >= p) * keep_scale`` as ``apply_dropout`` forms
them, are built once per dropout rate and shared by the packs (and by the
forward and backward passes).

Adam
----
Coupled L2 (``grad + l2 * w``), ``torch.optim.Adam``'s defaults
(betas 0.9/0.999, eps 1e-8), per-config learning rate and weight decay. The
default path calls torch's fused Adam kernel (``torch._fused_adam_``, one
pass over memory) once per distinct ``(learning_rate, l2)`` on the slices of
every config of the group that has it (all packs in one call); ``fused=False`` (or a torch without that kernel) uses a hand-written
update on the stacked tensors with per-config ``lr``/``l2`` columns, which
follows ``torch.optim.Adam``'s single-tensor arithmetic step by step.

Early stopping
--------------
Every ``eval_every`` steps all live configs are scored on the validation
split with vectorised versions of the primary metrics, all configs of a
pack at once: accuracy; key weighted score with the best of the four song
poolings (as jukemir and the serial reference score a key evaluation),
through a 24 x 24 table of ``mir_eval.key.weighted_score``; macro ROC-AUC
from ranks (``mirprobe.metrics.ranked_binary_scores``: Mann-Whitney with
average ranks for ties, equal to scikit-learn's to float rounding); mean R².
Each config keeps its own boredom counter, best score, best step and
best-state snapshot (parameters and validation outputs, copied into
preallocated stacks). At step 0 every config still holds the group's initial
weights, so one config per ``standardize`` is evaluated and scored and its
outputs serve every config with that scaling (as the serial reference gives
them all the same step-0 score). A config that stops (patience, ``max_steps`` or
non-finite outputs) has its best state copied out and is compacted away, so
it costs nothing afterwards. Its ``valid_metrics`` are computed from the
validation outputs of its best evaluation, as the serial reference keeps the
metrics of its best evaluation: with ``mirprobe.metrics.compute_metrics``
(for ``key``: with the ensemble chosen on validation), or, for
``multilabel``, with ``mirprobe.metrics.multilabel_metrics_batched`` for the
whole group at once (same values as scikit-learn's to float rounding). The
batched outputs differ from the serial network's by float rounding only, so
metrics agree to float tolerance; a rank-based metric can move by a tie's
worth (1 / (P N)) where two rounded outputs tie on one side only.

``wall_s`` in a batched record is the group's wall time (training and the
final metric pass) shared out in proportion to the steps each config took.
"""

import math
import random
import time
import warnings

import numpy as np
import torch

from mirprobe.errors import DataError
from mirprobe.metrics import TagExclusionWarning
from mirprobe.probes.common import (
    GridResult,
    ProbeInputs,
    check_configs,
    deterministic_algorithms,
    dropout_generators,
    fork_devices,
    grid_record,
    keep_scale,
    validate_inputs,
)
from mirprobe.probes.model import FittedProbe, ProbeMLP, TrainingRecord

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
"""``torch.optim.Adam`` defaults, as the serial reference uses them."""

EVAL_CHUNK_ROWS = 4096
"""Validation rows per batched forward pass."""


def fit_grid_batched(
    X_train,
    y_train,
    X_valid,
    y_valid,
    *,
    task_type: str,
    labels,
    configs,
    valid_groups=None,
    device: str = "cpu",
    fused: bool | None = None,
) -> GridResult:
    """Train every config of ``configs`` batched; same result as the serial ``fit_grid``.

    Usually called through ``fit_grid(..., trainer="batched")``; both check the
    configs with ``check_configs``. ``fused``: use torch's fused Adam kernel
    (``None``: when this torch has it).
    """
    configs = check_configs(configs)
    data = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    return train_grid_batched(data, configs=configs, device=device, fused=fused)


def train_grid_batched(
    data: ProbeInputs, *, configs, device="cpu", fused: bool | None = None
) -> GridResult:
    """``fit_grid_batched`` on inputs already checked by ``validate_inputs``."""
    configs = list(configs)
    torch_device = torch.device(device)
    if fused is None:
        fused = hasattr(torch, "_fused_adam_") and torch_device.type in ("cpu", "cuda")

    from sklearn.preprocessing import StandardScaler

    from mirprobe.probes.model import scale_features

    scaled = {}
    for standardize in sorted({config.standardize for config in configs}):
        scaler = StandardScaler(with_mean=standardize, with_std=standardize)
        scaler.fit(data.X_train.astype(np.float64))
        n_features = data.X_train.shape[1]
        mean = np.zeros(n_features) if scaler.mean_ is None else scaler.mean_
        scale = np.ones(n_features) if scaler.scale_ is None else scaler.scale_
        X_train_scaled = scale_features(data.X_train, mean=mean, scale=scale)
        X_valid_scaled = scale_features(data.X_valid, mean=mean, scale=scale)
        scaled[standardize] = {
            "mean": mean,
            "scale": scale,
            "X_valid": X_valid_scaled,
            "train_t": torch.from_numpy(X_train_scaled).to(torch_device),
            "valid_t": torch.from_numpy(X_valid_scaled).to(torch_device),
        }

    groups = {}
    for index, config in enumerate(configs):
        key = (config.batch_size, config.seed, config.hidden_sizes, config.eval_every)
        groups.setdefault(key, []).append(index)

    import sys

    from tqdm import tqdm

    task = _Task(data, device=torch_device)
    probes = [None] * len(configs)
    # configs done (as each stops), rate and ETA in the job's log (stderr goes
    # there), as the serial grid reports them
    progress = tqdm(total=len(configs), desc="probe grid (batched)", unit="config", file=sys.stderr)
    with (
        torch.random.fork_rng(devices=fork_devices(torch_device)),
        deterministic_algorithms(),
        progress,
    ):
        for indices in groups.values():
            trained = _train_group(
                [configs[i] for i in indices],
                task=task,
                scaled=scaled,
                device=torch_device,
                fused=fused,
                progress=progress,
            )
            for index, probe in zip(indices, trained, strict=True):
                probes[index] = probe

    best_index = None
    for index, probe in enumerate(probes):
        score = probe.record.valid_metrics["primary"]
        if best_index is None or score > probes[best_index].record.valid_metrics["primary"]:
            best_index = index
    best = probes[best_index]
    return GridResult(
        best=best,
        best_config=best.config,
        best_index=best_index,
        records=[grid_record(probe) for probe in probes],
    )


# -- one group ----------------------------------------------------------------


def _train_group(configs, *, task, scaled, device, fused, progress=None):
    """Train configs sharing (batch_size, seed, hidden_sizes, eval_every); return probes.
    ``progress`` (a tqdm bar) advances by one as each config stops."""
    start = time.perf_counter()
    counted = 0
    first = configs[0]
    n_features = task.n_features
    n_train = task.n_train
    batch_rows = min(first.batch_size, n_train)
    eval_every = first.eval_every
    widths = [n_features, *first.hidden_sizes, task.n_outputs]

    torch.manual_seed(first.seed)
    init = ProbeMLP(
        n_features=n_features,
        hidden_sizes=first.hidden_sizes,
        n_outputs=task.n_outputs,
        dropout=0.0,
    ).state_dict()
    names = _layer_names(len(first.hidden_sizes))
    init = [(init[f"{name}.weight"], init[f"{name}.bias"]) for name in names]

    packs = {}
    for position, config in enumerate(configs):
        packs.setdefault((config.standardize, config.dropout), []).append(position)
    packs = [
        _Pack(positions, configs, init=init, standardize=s, dropout=p, device=device)
        for (s, p), positions in packs.items()
    ]
    states = [
        {"boredom": 0, "curve": [], "best_score": -math.inf, "best_step": None} for _ in configs
    ]
    finished = [None] * len(configs)

    batches = _BatchIndices(random.Random(first.seed), n_train, batch_rows, device=device)
    generators = dropout_generators(first.seed, n_sites=len(widths) - 1, device=device)
    step_t = torch.zeros((), dtype=torch.float32, device=device)
    step = 0
    merged_key, merged_lists = None, None
    while packs:
        if step % eval_every == 0:
            for pack in packs:
                pack.finish(
                    [
                        j
                        for j, i in enumerate(pack.positions)
                        if states[i]["boredom"] >= configs[i].patience
                    ],
                    reason="patience",
                    step=step,
                    finished=finished,
                )
            packs = [pack for pack in packs if pack.k]
            initial = {}  # step 0: one evaluation per standardize (see _initial_scores)
            for pack in packs:
                if step == 0:
                    outputs, primaries = _initial_scores(pack, task, scaled, initial)
                else:
                    outputs = pack.evaluate(scaled[pack.standardize]["valid_t"])
                    primaries = task.primary(outputs)
                improved, diverged = [], []
                for j, i in enumerate(pack.positions):
                    score = primaries[j]
                    if not math.isfinite(score):
                        if states[i]["best_step"] is None:
                            raise DataError(
                                "the probe's validation outputs were NaN or inf before training "
                                "began; check the feature scale (standardize) of the training split"
                            )
                        diverged.append(j)
                        continue
                    state = states[i]
                    state["curve"].append((step, score))
                    if state["best_step"] is None or score > state["best_score"]:
                        state["best_score"], state["best_step"] = score, step
                        state["boredom"] = 0
                        improved.append(j)
                    else:
                        state["boredom"] += 1
                pack.snapshot(improved, outputs)
                pack.finish(diverged, reason="diverged", step=step, finished=finished)
            packs = [pack for pack in packs if pack.k]
        for pack in packs:
            pack.finish(
                [
                    j
                    for j, i in enumerate(pack.positions)
                    if configs[i].max_steps is not None and step >= configs[i].max_steps
                ],
                reason="max_steps",
                step=step,
                finished=finished,
            )
        packs = [pack for pack in packs if pack.k]
        if progress is not None:
            done = len(configs) - finished.count(None)
            if done > counted:
                progress.update(done - counted)
                counted = done
        if not packs:
            break

        batch = batches.next()
        uniforms = [
            torch.rand((batch_rows, width), generator=generator, device=device)
            for width, generator in zip(widths[:-1], generators, strict=True)
        ]
        x_batch = {s: scaled[s]["train_t"][batch] for s in {pack.standardize for pack in packs}}
        y_batch = task.y_train_t[batch]
        step_t += 1
        bias_correction = _BiasCorrection(step + 1)
        masks = {}  # apply_dropout's mask, (uniform >= p) * keep_scale, once per rate
        for pack in packs:
            if pack.dropout not in masks:
                masks[pack.dropout] = [
                    (uniform >= pack.dropout).to(uniform.dtype) * pack.keep_scale
                    for uniform in uniforms
                ]
            pack.gradients(x_batch[pack.standardize], y_batch, masks[pack.dropout], task=task)
        if fused:
            # One fused call per (learning_rate, l2) over the slices of every pack.
            lists_key = tuple(id(pack.fused_lists) for pack in packs)
            if lists_key != merged_key:
                merged_key, merged_lists = lists_key, _merge_fused_lists(packs)
            _fused_adam(merged_lists, step_t)
        else:
            for pack in packs:
                pack.adam(step_t, bias_correction, fused=False)
        step += 1

    modules, valid_scores = [], []
    for i, config in enumerate(configs):
        with torch.device("meta"):  # no random init: the weights are loaded next
            module = ProbeMLP(
                n_features=n_features,
                hidden_sizes=config.hidden_sizes,
                n_outputs=task.n_outputs,
                dropout=config.dropout,
            )
        module.to_empty(device=device).load_state_dict(finished[i]["state"])
        module.eval()
        modules.append(module)
        valid_scores.append(finished[i]["valid_scores"])
    # (multilabel: all configs at once from ranks; key: each its best song pooling)
    ensembles, all_metrics = task.kind.validation_metrics_stack(
        valid_scores, task.y_valid, labels=task.labels, groups=task.valid_groups
    )

    wall_s = time.perf_counter() - start
    total_steps = sum(f["n_steps"] + 1 for f in finished)
    probes = []
    for i, config in enumerate(configs):
        state, done = states[i], finished[i]
        record = TrainingRecord(
            curve=state["curve"],
            best_step=state["best_step"],
            best_score=state["best_score"],
            n_steps=done["n_steps"],
            wall_s=wall_s * (done["n_steps"] + 1) / total_steps,
            valid_metrics=all_metrics[i],
            stopped_by=done["stopped_by"],
        )
        probes.append(
            FittedProbe(
                config=config,
                scaler_mean=scaled[config.standardize]["mean"],
                scaler_scale=scaled[config.standardize]["scale"],
                module=modules[i],
                labels=task.labels,
                task_type=task.kind.name,
                record=record,
                ensemble=ensembles[i],
            )
        )
    return probes


def _initial_scores(pack, task, scaled, cache):
    """Step-0 validation outputs and primaries of ``pack``, shared per standardize.

    Before the first step every config of a group holds the same initial
    weights and evaluation has no dropout, so a config's outputs depend only
    on its scaling: one config is evaluated and scored per ``standardize``
    (as the serial reference would score each of them), and its outputs are
    shared by every config of the packs with that scaling.
    """
    if pack.standardize not in cache:
        first = pack.evaluate(scaled[pack.standardize]["valid_t"], count=1)
        cache[pack.standardize] = (first, task.primary(first))
    first, primary = cache[pack.standardize]
    return first.expand(pack.k, -1, -1), np.repeat(primary, pack.k)


def _merge_fused_lists(packs):
    merged = {}
    for pack in packs:
        for key, lists in pack.fused_lists.items():
            target = merged.setdefault(key, ([], [], [], []))
            for into, items in zip(target, lists, strict=True):
                into.extend(items)
    return merged


def _fused_adam(fused_lists, step_t):
    """torch's fused Adam (coupled L2) once per ``(learning_rate, l2)`` key of ``fused_lists``."""
    for (lr, l2), (params, grads, exp_avgs, exp_avg_sqs) in fused_lists.items():
        torch._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            [step_t] * len(params),
            lr=lr,
            beta1=BETA1,
            beta2=BETA2,
            weight_decay=l2,
            eps=EPS,
            amsgrad=False,
            maximize=False,
        )


def _layer_names(n_hidden):
    return [f"hidden.{i}" for i in range(n_hidden)] + ["output"]


class _BiasCorrection:
    """Adam's step-dependent factors, as ``torch.optim.Adam`` computes them in float64."""

    def __init__(self, step):
        self.bias_correction1 = 1 - BETA1**step
        self.bias_correction2_sqrt = (1 - BETA2**step) ** 0.5


class _Pack:
    """Configs of one group sharing (standardize, dropout): stacked parameters and state."""

    def __init__(self, positions, configs, *, init, standardize, dropout, device):
        self.positions = list(positions)
        self.standardize = standardize
        self.dropout = dropout
        self.keep_scale = keep_scale(dropout).to(device)
        k = len(self.positions)
        self.weights = [w.to(device).unsqueeze(0).repeat(k, 1, 1) for w, _ in init]
        self.biases = [b.to(device).unsqueeze(0).repeat(k, 1) for _, b in init]
        self.lr = [configs[i].learning_rate for i in self.positions]
        self.l2 = [configs[i].l2 for i in self.positions]
        self.names = _layer_names(len(init) - 1)
        params = self.params
        self.grads = [torch.zeros_like(p) for p in params]
        self.exp_avgs = [torch.zeros_like(p) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
        self.best = [p.clone() for p in params]
        self.best_outputs = None
        self._index_lists()

    @property
    def k(self):
        return len(self.positions)

    @property
    def params(self):
        return [*self.weights, *self.biases]

    def _index_lists(self):
        device = self.weights[0].device
        self.lr_t = torch.tensor(self.lr, dtype=torch.float32, device=device)
        self.l2_t = torch.tensor(self.l2, dtype=torch.float32, device=device)
        self.fused_lists = {}
        for j, key in enumerate(zip(self.lr, self.l2, strict=True)):
            lists = self.fused_lists.setdefault(key, ([], [], [], []))
            for n, param in enumerate(self.params):
                lists[0].append(param[j])
                lists[1].append(self.grads[n][j])
                lists[2].append(self.exp_avgs[n][j])
                lists[3].append(self.exp_avg_sqs[n][j])

    # -- training --

    def gradients(self, x, y, masks, *, task):
        """Fill ``self.grads`` with every config's gradient of its mean loss on the batch."""
        k, rows = self.k, x.shape[0]
        weights, biases = self.weights, self.biases
        x = x * masks[0]
        width = weights[0].shape[1]
        z = torch.addmm(biases[0].view(-1), x, weights[0].view(k * width, -1).t())
        z = z.view(rows, k, width).transpose(0, 1)
        pre, acts = [], []
        for layer in range(1, len(weights)):
            act = torch.relu(z).mul_(masks[layer])
            pre.append(z)
            acts.append(act)
            z = torch.baddbmm(biases[layer].unsqueeze(1), act, weights[layer].transpose(1, 2))
        grad_z = task.loss_gradient(z, y)
        n_layers = len(weights)
        for layer in range(n_layers - 1, 0, -1):
            act = acts[layer - 1]
            torch.bmm(grad_z.transpose(1, 2), act, out=self.grads[layer])
            torch.sum(grad_z, dim=1, out=self.grads[n_layers + layer])
            grad_act = torch.bmm(grad_z, weights[layer])
            grad_z = grad_act.mul_(masks[layer])
            grad_z = grad_z * (pre[layer - 1] > 0)
        grad_z = grad_z.transpose(0, 1).reshape(rows, k * width)
        torch.mm(grad_z.t(), x, out=self.grads[0].view(k * width, -1))
        torch.sum(grad_z, dim=0, out=self.grads[n_layers].view(-1))

    def adam(self, step_t, bias_correction, *, fused):
        """One Adam step (coupled L2) with each config's learning rate and weight decay."""
        if fused:
            _fused_adam(self.fused_lists, step_t)
            return
        # torch.optim.Adam's single-tensor arithmetic, one column per config.
        step_size = torch.tensor(
            [-lr / bias_correction.bias_correction1 for lr in self.lr],
            dtype=torch.float32,
            device=step_t.device,
        )
        for param, grad, exp_avg, exp_avg_sq in zip(
            self.params, self.grads, self.exp_avgs, self.exp_avg_sqs, strict=True
        ):
            column = (-1,) + (1,) * (param.dim() - 1)
            grad.addcmul_(param, self.l2_t.view(column))
            exp_avg.lerp_(grad, 1 - BETA1)
            exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
            denom = (exp_avg_sq.sqrt() / bias_correction.bias_correction2_sqrt).add_(EPS)
            param.addcdiv_(torch.mul(exp_avg, step_size.view(column), out=grad), denom)

    # -- evaluation and state --

    def evaluate(self, X_valid, count=None):
        """Eval-mode outputs of every config (the first ``count``), shape (k, n_valid, n_outputs)."""
        k = self.k if count is None else count
        weights = [weight[:k] for weight in self.weights]
        biases = [bias[:k] for bias in self.biases]
        width = weights[0].shape[1]
        chunks = []
        with torch.no_grad():
            for start in range(0, len(X_valid), EVAL_CHUNK_ROWS):
                x = X_valid[start : start + EVAL_CHUNK_ROWS]
                z = torch.addmm(biases[0].view(-1), x, weights[0].view(k * width, -1).t())
                z = z.view(len(x), k, width).transpose(0, 1)
                for layer in range(1, len(weights)):
                    z = torch.baddbmm(
                        biases[layer].unsqueeze(1), torch.relu(z), weights[layer].transpose(1, 2)
                    )
                chunks.append(z)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)

    def snapshot(self, improved, outputs):
        """Copy the parameters and validation outputs of the configs at ``improved``."""
        if not improved:
            return
        if self.best_outputs is None:
            self.best_outputs = torch.empty(
                outputs.shape, dtype=outputs.dtype, device=outputs.device
            )
        pairs = zip([*self.best, self.best_outputs], [*self.params, outputs], strict=True)
        if len(improved) == self.k:
            for best, current in pairs:
                best.copy_(current)
            return
        index = torch.tensor(improved, device=self.weights[0].device)
        for best, current in pairs:
            best.index_copy_(0, index, current.index_select(0, index))

    def finish(self, stopping, *, reason, step, finished):
        """Copy out the best state of the configs at ``stopping`` and drop them."""
        if not stopping:
            return
        n_layers = len(self.weights)
        for j in stopping:
            state = {}
            for layer, name in enumerate(self.names):
                state[f"{name}.weight"] = self.best[layer][j].detach().cpu().clone()
                state[f"{name}.bias"] = self.best[n_layers + layer][j].detach().cpu().clone()
            finished[self.positions[j]] = {
                "state": state,
                "valid_scores": self.best_outputs[j].detach().cpu().numpy(),
                "n_steps": step,
                "stopped_by": reason,
            }
        keep = [j for j in range(self.k) if j not in set(stopping)]
        index = torch.tensor(keep, dtype=torch.long, device=self.weights[0].device)

        def select(tensors):
            return [tensor.index_select(0, index) for tensor in tensors]

        self.weights = select(self.weights)
        self.biases = select(self.biases)
        self.grads = select(self.grads)
        self.exp_avgs = select(self.exp_avgs)
        self.exp_avg_sqs = select(self.exp_avg_sqs)
        self.best = select(self.best)
        if self.best_outputs is not None:
            self.best_outputs = self.best_outputs.index_select(0, index)
        self.positions = [self.positions[j] for j in keep]
        self.lr = [self.lr[j] for j in keep]
        self.l2 = [self.l2[j] for j in keep]
        self._index_lists()


# -- batches and the task ---------------------------------------------------------


class _BatchIndices:
    """Each step's training rows: ``rng.sample(range(n_train), rows)``, as the serial
    trainer draws them, but drawn ``block`` steps at a time and sent to the device
    in one copy (one host-to-device copy per step is a sync point on CUDA).
    Draws past the last step are never used; ``rng`` is this group's own."""

    def __init__(self, rng, n_train, rows, *, device, block=64):
        self.rng, self.n_train, self.rows = rng, n_train, rows
        self.device, self.block = device, block
        self.drawn, self.used = None, 0

    def next(self):
        if self.drawn is None or self.used == len(self.drawn):
            draws = [self.rng.sample(range(self.n_train), self.rows) for _ in range(self.block)]
            self.drawn = torch.tensor(draws).to(self.device)
            self.used = 0
        self.used += 1
        return self.drawn[self.used - 1]


class _Task:
    """A grid's training targets and validation data on the device, with its task
    type's loss gradient and vectorised primary metric (``mirprobe.task_types``)."""

    def __init__(self, data, *, device):
        self.kind = data.task
        self.labels = data.labels
        self.n_outputs = len(data.labels)
        self.n_features = data.X_train.shape[1]
        self.n_train = len(data.X_train)
        self.y_valid = data.y_valid
        self.valid_groups = data.valid_groups
        self.y_train_t = self.kind.train_targets(data.y_train, device=device)
        # Validate labels, groups and targets once, as the serial first evaluation would.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TagExclusionWarning)
            self.kind.metrics(
                y_true=data.y_valid,
                scores=np.zeros((len(data.y_valid), self.n_outputs)),
                labels=self.labels,
                groups=self.kind.song_groups(data.valid_groups),
            )
        self.scorer = self.kind.batched_scorer(
            data.y_valid, labels=self.labels, groups=data.valid_groups
        )

    def loss_gradient(self, logits, y):
        """d(sum over configs of each config's mean loss) / d logits; logits (k, B, out)."""
        return self.kind.loss_gradient(logits, y)

    def primary(self, scores):
        """Validation primary metric of every config; ``nan`` where outputs are not finite."""
        scores = scores.detach().cpu()
        finite = torch.isfinite(scores).flatten(1).all(dim=1)
        values = np.full(len(scores), math.nan)
        if bool(finite.all()):
            values[:] = self.scorer(scores)
        elif bool(finite.any()):
            ok = torch.nonzero(finite).flatten()
            values[ok.numpy()] = self.scorer(scores[ok])
        return values
