"""torch_balance.losses: each loss against its paper's formula on cases worked by hand,
gradcheck in float64, CrossEntropyLoss's conventions (reduction, ignore_index,
label_smoothing, weight, (N, C, d) shapes) matched against F.cross_entropy, the reduction to
plain cross-entropy where the paper says so, half-precision logits, and hostile input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from torch_balance.labels import LabelIndex
from torch_balance.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    NormedLinear,
    class_counts,
    logit_adjust,
    tau_normalize,
)

COUNTS = {0: 500, 1: 120, 2: 30, 3: 5}
EQUAL = {0: 40, 1: 40, 2: 40, 3: 40}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(shape: tuple[int, ...] = (6, 4), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(*shape, generator=_gen(seed)) * 3
    target_shape = (shape[0], *shape[2:])
    target = torch.randint(shape[1], target_shape, generator=_gen(seed + 1))
    return logits, target


def _losses(counts: Any = COUNTS, **options: Any) -> dict[str, torch.nn.Module]:
    """Every loss built on ``counts``, with the options each takes."""
    smoothing = {k: v for k, v in options.items() if k != "label_smoothing"}
    return {
        "la": LogitAdjustedLoss(counts, tau=1.5, **options),
        "bs": BalancedSoftmaxLoss(counts, **options),
        "ldam": LDAMLoss(counts, max_margin=0.5, scale=5.0, **options),
        "cb": ClassBalancedLoss(counts, beta=0.99, **options),
        "cb-focal": ClassBalancedLoss(counts, beta=0.99, loss="focal", gamma=1.5, **smoothing),
        "focal": FocalLoss(gamma=2.0, num_classes=len(counts), **smoothing),
    }


# The papers' formulas, worked by hand.


def test_logit_adjusted_and_balanced_softmax_by_hand() -> None:
    # Menon et al.: -log(exp(z_y + tau log pi_y) / sum_j exp(z_j + tau log pi_j))
    logits, counts = torch.tensor([[1.0, 0.0]]), {0: 3, 1: 1}
    # class 1 (prior 1/4), tau = 1: -log(0.25 / (0.75 e + 0.25)) = log(3e + 1)
    expected = math.log(3 * math.e + 1)
    la = LogitAdjustedLoss(counts, tau=1.0)(logits, torch.tensor([1]))
    assert float(la) == pytest.approx(expected, rel=1e-6)
    # Ren et al.: -log(n_y exp(z_y) / sum_j n_j exp(z_j)), the same number
    bs = BalancedSoftmaxLoss(counts)(logits, torch.tensor([1]))
    assert float(bs) == pytest.approx(expected, rel=1e-6)
    # tau = 2: -log(0.25^2 / (0.75^2 e + 0.25^2)) = log(9e + 1)
    la2 = LogitAdjustedLoss(counts, tau=2.0)(logits, torch.tensor([1]))
    assert float(la2) == pytest.approx(math.log(9 * math.e + 1), rel=1e-6)
    # zero logits: the loss is -log(prior of the target)
    zero = LogitAdjustedLoss([0] * 90 + [1] * 10)(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert float(zero) == pytest.approx(-(math.log(0.9) + math.log(0.1)) / 2, rel=1e-6)


def test_ldam_by_hand() -> None:
    # Cao et al.: m_j = K / n_j^(1/4), the largest max_margin: counts 625 and 1 give 0.1, 0.5
    loss = LDAMLoss({0: 625, 1: 1}, max_margin=0.5, scale=2.0)
    assert loss.margins.tolist() == pytest.approx([0.1, 0.5])
    logits = torch.tensor([[0.3, 0.2]])
    # target 1: 2 * [0.3, 0.2 - 0.5] = [0.6, -0.6]; -log softmax = log(1 + e^1.2)
    assert float(loss(logits, torch.tensor([1]))) == pytest.approx(math.log1p(math.exp(1.2)))
    # target 0: 2 * [0.3 - 0.1, 0.2] = [0.4, 0.4]; log 2
    assert float(loss(logits, torch.tensor([0]))) == pytest.approx(math.log(2.0))
    # no margin and scale 1: plain cross-entropy, whatever the counts
    logits, target = _batch()
    plain = LDAMLoss(COUNTS, max_margin=0.0, scale=1.0)(logits, target)
    assert torch.allclose(plain, F.cross_entropy(logits, target))


def test_class_balanced_by_hand() -> None:
    # Cui et al.: w_j = (1 - beta) / (1 - beta^n_j), normalised to sum to C
    beta, counts = 0.999, {0: 1000, 1: 10}
    raw = [(1 - beta) / (1 - beta**n) for n in counts.values()]
    weights = [2 * r / sum(raw) for r in raw]
    loss = ClassBalancedLoss(counts, beta=beta)
    assert loss.weight is not None
    assert loss.weight.tolist() == pytest.approx(weights, rel=1e-6)
    logits, target = torch.tensor([[1.0, 0.0], [0.5, 2.0]]), torch.tensor([1, 0])
    ce = [math.log(math.e + 1) - 0.0, math.log(math.exp(0.5) + math.exp(2.0)) - 0.5]
    expected = (weights[1] * ce[0] + weights[0] * ce[1]) / (weights[1] + weights[0])
    assert float(loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    # the sum is the weighted sum; focal form: (1 - p)^gamma on top
    total = ClassBalancedLoss(counts, beta=beta, reduction="sum")(logits, target)
    assert float(total) == pytest.approx(weights[1] * ce[0] + weights[0] * ce[1], rel=1e-6)
    p = [math.exp(-c) for c in ce]
    focal = [(1 - p[0]) ** 2 * ce[0], (1 - p[1]) ** 2 * ce[1]]
    cbf = ClassBalancedLoss(counts, beta=beta, loss="focal", gamma=2.0, reduction="sum")
    expected = weights[1] * focal[0] + weights[0] * focal[1]
    assert float(cbf(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_focal_by_hand() -> None:
    # Lin et al.: -(1 - p_y)^gamma log p_y; p_y = 0.9 with logits [log 9, 0]
    logits = torch.tensor([[math.log(9.0), 0.0]])
    loss = FocalLoss(gamma=2.0)(logits, torch.tensor([0]))
    assert float(loss) == pytest.approx(-(0.1**2) * math.log(0.9), rel=1e-5)
    loss = FocalLoss(gamma=0.5)(logits, torch.tensor([1]))
    assert float(loss) == pytest.approx(-(0.9**0.5) * math.log(0.1), rel=1e-6)
    # alpha per class (weight), averaged as CrossEntropyLoss averages a weighted loss
    weighted = FocalLoss(gamma=2.0, weight=[0.25, 0.75])(
        torch.cat([logits, logits]), torch.tensor([0, 1])
    )
    expected = (0.25 * -(0.1**2) * math.log(0.9) + 0.75 * -(0.9**2) * math.log(0.1)) / 1.0
    assert float(weighted) == pytest.approx(expected, rel=1e-5)


def test_posthoc_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    counts = {0: 100, 1: 10, 2: 1}
    prior = torch.tensor([100.0, 10.0, 1.0]) / 111
    out = logit_adjust(logits, counts, tau=0.5)
    assert torch.allclose(out, logits - 0.5 * prior.log())
    assert torch.equal(logit_adjust(logits, counts, tau=0.0), logits)
    assert logit_adjust(logits, counts).argmax(1).tolist() == [2]  # the rare class wins
    # equal counts: a constant shift, same argmax and softmax
    same = logit_adjust(logits, {0: 7, 1: 7, 2: 7})
    assert torch.allclose(same.softmax(1), logits.softmax(1))
    # Kang et al.: w_j / ||w_j||^tau
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    half = tau_normalize(w, 0.5)
    assert torch.allclose(half[0], w[0] / 5**0.5) and torch.allclose(half[1], w[1] / 2**0.5)
    assert torch.equal(half[2], w[2])  # a zero vector stays zero
    assert torch.allclose(tau_normalize(w, 1.0)[:2].norm(dim=1), torch.ones(2))
    assert torch.equal(tau_normalize(w, 0.0), w) and w[0, 0] == 3.0  # not changed in place
    head = torch.nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(w)
    normed = tau_normalize(head, 1.0)
    assert isinstance(normed, torch.nn.Linear) and normed is not head
    assert torch.equal(normed.bias, head.bias) and torch.equal(head.weight, w)
    assert torch.allclose(normed.weight, tau_normalize(w, 1.0))


# Counts from labels, a dataset, a LabelIndex or a mapping.


def test_counts_come_from_labels_datasets_and_indexes() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    dataset = TensorDataset(torch.zeros(10, 2), labels)
    sources = [labels, labels.tolist(), dataset, LabelIndex(labels), {0: 6, 1: 3, 2: 1}]
    for source in sources:
        assert class_counts(source).tolist() == [6.0, 3.0, 1.0]
        assert torch.equal(LogitAdjustedLoss(source).counts, torch.tensor([6.0, 3.0, 1.0]))
    assert class_counts(labels, num_classes=5).tolist() == [6.0, 3.0, 1.0, 0.0, 0.0]
    assert LDAMLoss(["cat", "dog", "dog"]).num_classes == 2  # the sorted classes


def test_deferred_reweighting_switches_at_its_epoch() -> None:
    drw = DeferredReweighting(COUNTS, start_epoch=2, beta=0.999)
    balanced = ClassBalancedLoss(COUNTS, beta=0.999).weight
    assert torch.equal(drw.weight(0), torch.ones(4)) and torch.equal(drw.weight(1), torch.ones(4))
    assert torch.equal(drw.weight(2), balanced) and torch.equal(drw.weight(9), balanced)
    drw.weight(5).mul_(0)  # a copy: the schedule keeps its weights
    assert torch.equal(drw.weight(5), balanced)
    assert "start_epoch=2" in repr(drw)
    logits, target = _batch()
    ldam = LDAMLoss(COUNTS, scale=1.0)
    before = ldam(logits, target)
    ldam.weight = drw.weight(0)
    assert torch.allclose(ldam(logits, target), before)  # ones: the unweighted loss
    ldam.weight = drw.weight(2)
    reference = LDAMLoss(COUNTS, scale=1.0, weight=balanced)(logits, target)
    assert torch.equal(ldam(logits, target), reference)
    ce = torch.nn.CrossEntropyLoss()  # the schedule drives torch's loss as well
    ce.weight = drw.weight(3)
    assert torch.allclose(ce(logits, target), F.cross_entropy(logits, target, weight=balanced))
    # equal counts: the balanced weights are all 1 and DRW is plain cross-entropy
    assert torch.allclose(DeferredReweighting(EQUAL, 0).weight(0), torch.ones(4))


# CrossEntropyLoss's conventions.


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5), (2, 4, 3, 2)])
def test_equal_counts_give_plain_cross_entropy(reduction: str, shape: tuple[int, ...]) -> None:
    logits, target = _batch(shape)
    target.view(-1)[::3] = -100  # ignored entries
    options = {"reduction": reduction, "label_smoothing": 0.1}
    reference = F.cross_entropy(logits, target, **options)  # type: ignore[arg-type]
    for loss in (
        LogitAdjustedLoss(EQUAL, tau=1.7, **options),
        BalancedSoftmaxLoss(EQUAL, **options),
        ClassBalancedLoss(EQUAL, beta=0.9999, **options),
        ClassBalancedLoss(COUNTS, beta=0.0, **options),  # beta = 0: no weighting
        LDAMLoss(COUNTS, max_margin=0.0, scale=1.0, **options),
    ):
        assert torch.allclose(loss(logits, target), reference, atol=1e-6), loss
    plain = {"reduction": reduction}
    for loss in (
        FocalLoss(gamma=0.0, **plain),  # type: ignore[arg-type]
        ClassBalancedLoss(EQUAL, loss="focal", gamma=0.0, **plain),  # type: ignore[arg-type]
    ):
        expected = F.cross_entropy(logits, target, **plain)  # type: ignore[arg-type]
        assert torch.allclose(loss(logits, target), expected, atol=1e-6), loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_options_match_cross_entropy_on_the_shifted_logits(reduction: str) -> None:
    logits, target = _batch((5, 4, 3))
    target[0, 1] = target[3, 2] = 7  # ignore_index=7
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0])
    options: dict[str, Any] = {"reduction": reduction, "ignore_index": 7, "label_smoothing": 0.2}
    la = LogitAdjustedLoss(COUNTS, tau=0.8, weight=weight, **options)
    shifted = logits + 0.8 * la.log_prior.view(-1, 1)
    expected = F.cross_entropy(shifted, target, weight=weight, **options)
    assert torch.allclose(la(logits, target), expected, atol=1e-6)
    ldam = LDAMLoss(COUNTS, max_margin=0.4, scale=3.0, weight=weight, **options)
    onehot = F.one_hot(target.clamp(0, 3), 4).permute(0, 2, 1).float()
    margins = (ldam.margins.view(1, 4, 1) * onehot) * (target != 7).unsqueeze(1)
    expected = F.cross_entropy(3.0 * (logits - margins), target, weight=weight, **options)
    assert torch.allclose(ldam(logits, target), expected, atol=1e-5)
    cb = ClassBalancedLoss(COUNTS, beta=0.99, **options)
    expected = F.cross_entropy(logits, target, weight=cb.weight, **options)
    assert torch.allclose(cb(logits, target), expected, atol=1e-6)
    # the focal losses, with gamma = 0 and a weight: F.cross_entropy's weighted mean
    del options["label_smoothing"]
    focal = FocalLoss(gamma=0.0, weight=weight, **options)
    expected = F.cross_entropy(logits, target, weight=weight, **options)
    assert torch.allclose(focal(logits, target), expected, atol=1e-6)
    if reduction == "none":
        assert (focal(logits, target)[target == 7] == 0).all()


def test_class_probabilities_as_targets() -> None:
    logits, _ = _batch()
    soft = torch.softmax(torch.randn(6, 4, generator=_gen(5)), dim=1)
    la = LogitAdjustedLoss(COUNTS, tau=1.0)
    expected = F.cross_entropy(logits + la.log_prior, soft)
    assert torch.allclose(la(logits, soft), expected)
    cb = ClassBalancedLoss(COUNTS, beta=0.9)
    assert torch.allclose(cb(logits, soft), F.cross_entropy(logits, soft, weight=cb.weight))
    for loss in (LDAMLoss(COUNTS), FocalLoss(), ClassBalancedLoss(COUNTS, loss="focal")):
        with pytest.raises(TypeError, match="target: expected a tensor of class indices"):
            loss(logits, soft)


def test_unbatched_logits() -> None:
    logits, target = torch.tensor([1.0, -0.5, 0.2, 2.0]), torch.tensor(2)
    for name, loss in _losses().items():
        batched = loss(logits.unsqueeze(0), target.unsqueeze(0))
        assert torch.allclose(loss(logits, target), batched), name


def test_ignoring_every_target_gives_nan_like_cross_entropy() -> None:
    logits = torch.randn(3, 4, generator=_gen())
    target = torch.full((3,), -100)
    assert F.cross_entropy(logits, target).isnan()
    for name, loss in _losses().items():
        assert loss(logits, target).isnan(), name


# Gradients.


@pytest.mark.parametrize("shape", [(5, 4), (4, 4, 2)])  # the fused path, the reference
def test_gradcheck_in_float64(shape: tuple[int, ...]) -> None:
    logits, target = _batch(shape)
    target.view(-1)[0] = -100
    logits = logits.double().requires_grad_()
    smoothing = 0.0 if len(shape) == 2 else 0.1  # smoothing takes the reference path
    for name, loss in _losses(label_smoothing=smoothing).items():
        for reduction in ("mean", "none"):
            loss.reduction = reduction
            f = lambda z, f=loss: f(z, target)  # noqa: E731
            assert torch.autograd.gradcheck(f, (logits,)), (name, reduction)
        assert loss(logits, target).dtype == torch.float64, name
    w = torch.randn(4, 3, dtype=torch.float64, generator=_gen(2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: tau_normalize(v, 0.7), (w,))
    assert torch.autograd.gradcheck(lambda z: logit_adjust(z, COUNTS, 0.7), (logits,))


def test_ignored_targets_get_no_gradient() -> None:
    logits, target = _batch()
    target[2] = -100
    for name, loss in _losses().items():
        z = logits.clone().requires_grad_()
        loss(z, target).backward()
        assert z.grad is not None and (z.grad[2] == 0).all(), name
        assert (z.grad[0] != 0).any(), name


# Half precision and extreme logits.


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits(dtype: torch.dtype) -> None:
    logits, target = _batch((8, 4, 3))
    for name, loss in _losses(label_smoothing=0.05).items():
        reference = loss(logits.to(dtype).float(), target)
        z = (logits.to(dtype)).requires_grad_()
        value = loss(z, target)
        assert value.dtype == torch.float32 and torch.allclose(value, reference), name
        value.backward()
        assert z.grad is not None and z.grad.dtype == dtype, name
        assert torch.isfinite(z.grad.float()).all(), name
    # logits near the largest float16 (65504): exp would overflow in float16
    big = torch.tensor([[60000.0, -60000.0, 0.0, 1.0]], dtype=dtype)
    for name, loss in _losses().items():
        for t in (0, 2):
            z = big.clone().requires_grad_()
            value = loss(z, torch.tensor([t]))
            value.backward()
            assert torch.isfinite(value), (name, t)
            assert z.grad is not None and torch.isfinite(z.grad.float()).all(), (name, t)


def test_focal_gradient_is_finite_where_the_model_is_certain() -> None:
    logits = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    for gamma in (0.3, 1.0, 2.0):
        FocalLoss(gamma=gamma)(logits, torch.tensor([0])).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), gamma
        logits.grad = None


def test_normed_linear_gives_cosines() -> None:
    head = NormedLinear(6, 4, generator=_gen(3))
    x = torch.randn(5, 6, generator=_gen(4))
    expected = F.cosine_similarity(x.unsqueeze(1), head.weight.unsqueeze(0), dim=2)
    assert torch.allclose(head(x), expected, atol=1e-6)
    again = NormedLinear(6, 4, generator=_gen(3))
    assert torch.equal(again.weight, head.weight)
    loss = LDAMLoss(COUNTS, scale=30.0)(head(x), torch.tensor([0, 1, 2, 3, 0]))
    loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_a_loss_moves_with_its_module_and_reprs() -> None:
    loss = LogitAdjustedLoss(COUNTS, tau=0.5, reduction="sum")
    assert "tau=0.5" in repr(loss) and "reduction='sum'" in repr(loss)
    assert "max_margin=0.5" in repr(LDAMLoss(COUNTS))
    assert "loss='focal', gamma=2" in repr(ClassBalancedLoss(COUNTS, loss="focal", gamma=2))
    assert "gamma=2" in repr(FocalLoss())
    assert set(loss.state_dict()) == set()  # derived from the labels: not saved
    weighted = LDAMLoss(COUNTS, weight=torch.ones(4))
    assert set(weighted.state_dict()) == {"weight"}  # as CrossEntropyLoss saves its weight


# Hostile input.


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: LogitAdjustedLoss({0: 5, 1: 2}, tau=-1.0),
            r"tau: expected a finite number in \[0",
        ),
        (lambda: LogitAdjustedLoss({0: 5, 1: 2}, tau=float("nan")), "tau: expected a finite"),
        (lambda: LogitAdjustedLoss({0: 5, 1: 2}, tau=math.inf), "tau: expected a finite"),
        (
            lambda: ClassBalancedLoss(COUNTS, beta=1.0),
            r"beta: expected a finite number in \[0, 1\)",
        ),
        (lambda: ClassBalancedLoss(COUNTS, beta=-0.1), "beta: expected"),
        (lambda: DeferredReweighting(COUNTS, 1, beta=1.5), "beta: expected"),
        (lambda: FocalLoss(gamma=-0.5), r"gamma: expected a finite number in \[0"),
        (lambda: ClassBalancedLoss(COUNTS, loss="focal", gamma=-1), "gamma: expected"),
        (lambda: LDAMLoss(COUNTS, max_margin=-0.1), "max_margin: expected"),
        (lambda: LDAMLoss(COUNTS, scale=0.0), r"scale: expected a finite number in \(0"),
        (lambda: LDAMLoss(COUNTS, reduction="avg"), "reduction: expected one of 'mean'"),
        (lambda: FocalLoss(label_smoothing=0.1), "unexpected keyword"),
        (lambda: LogitAdjustedLoss(COUNTS, label_smoothing=1.5), "label_smoothing: expected"),
        (lambda: ClassBalancedLoss(COUNTS, loss="focal", label_smoothing=0.1), "label_smoothing"),
        (lambda: ClassBalancedLoss(COUNTS, loss="sigmoid"), "loss: expected one of 'softmax'"),
        (lambda: LogitAdjustedLoss(COUNTS, weight=[1.0, 2.0]), r"weight: expected one weight per"),
        (lambda: LogitAdjustedLoss(COUNTS, weight=[1, -1, 1, 1]), "weight: expected finite"),
        (lambda: DeferredReweighting(COUNTS, -1), "start_epoch: expected an integer >= 0"),
        (lambda: DeferredReweighting(COUNTS, 0).weight(-2), "epoch: expected an integer >= 0"),
        (lambda: tau_normalize(torch.ones(3, 2), -0.5), "tau: expected"),
        (lambda: tau_normalize(torch.ones(3), 1.0), r"classifier: expected a weight of shape"),
        (lambda: logit_adjust(torch.zeros(2, 4), COUNTS, tau=-2), "tau: expected"),
        (lambda: logit_adjust(torch.zeros(2, 3), COUNTS), "logits: expected 4 classes"),
    ],
)
def test_bad_arguments_are_named(build: Any, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        build()


@pytest.mark.parametrize(
    "make",
    [
        lambda labels: LogitAdjustedLoss(labels),
        lambda labels: BalancedSoftmaxLoss(labels),
        lambda labels: LDAMLoss(labels),
        lambda labels: ClassBalancedLoss(labels),
        lambda labels: DeferredReweighting(labels, 3),
        lambda labels: logit_adjust(torch.zeros(1, 3), labels),
    ],
)
def test_a_class_without_samples_is_refused(make: Any) -> None:
    # label 1 never occurs: its log count (or effective number) is undefined
    with pytest.raises(ValueError) as info:
        make([0, 0, 2, 2, 2])
    message = str(info.value)
    assert message.startswith("labels: expected at least one sample of every class")
    assert "class 1 with 0 samples" in message and "{class: count}" in message
    with pytest.raises(ValueError, match="class 3 with 0 samples"):
        make([0, 1, 2, 0, 1, 2, 4])
    with pytest.raises(ValueError, match=r"labels\[1\]: expected an integer >= 1, got 0"):
        make({0: 5, 1: 0, 2: 3})


def test_wrong_logits_are_refused() -> None:
    for name, loss in _losses().items():
        with pytest.raises(ValueError, match="logits: expected 4 classes along dimension 1") as e:
            loss(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
        assert "num_classes=" in str(e.value), name
        with pytest.raises(ValueError, match="logits: expected 4 classes"):
            loss(torch.zeros(3, 2, 4), torch.zeros(3, 4, dtype=torch.long))  # classes last
        with pytest.raises(TypeError, match="logits: expected a floating-point tensor"):
            loss(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))
        with pytest.raises(TypeError, match="logits: expected a floating-point tensor"):
            loss([[0.0] * 4], torch.zeros(1, dtype=torch.long))
    with pytest.raises(TypeError, match="classifier: expected a float weight tensor"):
        tau_normalize([[1.0, 2.0]], 1.0)  # type: ignore[type-var]


def test_num_classes_widens_the_counts() -> None:
    # the model outputs 5 classes, the labels show 4: class 4 has no samples, so it is refused
    with pytest.raises(ValueError, match="class 4 with 0 samples"):
        LogitAdjustedLoss(COUNTS, num_classes=5)
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 4"):
        LogitAdjustedLoss(COUNTS, num_classes=3)
    assert LogitAdjustedLoss({**COUNTS, 4: 1}, num_classes=5).num_classes == 5


# The fused fast path against the plain reference.


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_fused_path_matches_the_reference(seed: int, reduction: str) -> None:
    """(N, C) logits take the fused path; (N, C, 1) ones the reference (cross-entropy on the
    transformed logits, or the plain focal loss): values and gradients agree."""
    gen = _gen(100 + seed)
    classes = int(torch.randint(2, 9, (1,), generator=gen))
    rows = int(torch.randint(1, 12, (1,), generator=gen))
    counts = {c: int(n) for c, n in enumerate(torch.randint(1, 400, (classes,), generator=gen))}
    weight = torch.rand(classes, generator=gen) + 0.1 if seed % 2 else None
    options: dict[str, Any] = {"reduction": reduction, "ignore_index": -1, "weight": weight}
    gamma = float(torch.rand(1, generator=gen)) * 3
    losses = [
        LogitAdjustedLoss(counts, tau=float(torch.rand(1, generator=gen)) * 2, **options),
        LDAMLoss(
            counts, max_margin=0.7, scale=float(torch.rand(1, generator=gen)) * 20 + 0.5, **options
        ),
        FocalLoss(gamma=gamma, **options),
        FocalLoss(gamma=0.0, **options),
    ]
    options.pop("weight")
    losses += [
        ClassBalancedLoss(counts, beta=0.999, **options),
        ClassBalancedLoss(counts, beta=0.99, loss="focal", gamma=gamma, **options),
    ]
    logits = torch.randn(rows, classes, generator=gen, dtype=torch.float64) * 4
    target = torch.randint(classes, (rows,), generator=gen)
    target[torch.rand(rows, generator=gen) < 0.2] = -1
    for loss in losses:
        fast_z = logits.clone().requires_grad_()
        plain_z = logits.clone().unsqueeze(2).requires_grad_()
        fast = loss(fast_z, target)
        plain = loss(plain_z, target.unsqueeze(1))
        plain = plain.squeeze(1) if reduction == "none" else plain
        assert torch.allclose(fast, plain, rtol=1e-10, atol=1e-12, equal_nan=True), loss
        if fast.isnan().any():
            continue  # every target ignored
        fast.sum().backward()
        plain.sum().backward()
        assert fast_z.grad is not None and plain_z.grad is not None
        assert torch.allclose(fast_z.grad, plain_z.grad.squeeze(2), rtol=1e-9, atol=1e-12), loss
