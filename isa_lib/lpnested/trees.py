"""Trees of Lp-nested functions (Eq. 6, 9-10; Fig. 4) and their exponents.

A tree is written as nested ``(p, [children])`` tuples: ``p`` is the node's exponent, each child is
either an ``int`` (that many leaves) or another ``(p, [...])`` tuple.  Leaves are assigned to the latent
coordinates left to right.  Eq. 6 is ``(p0, [1, (p1, [2])])``; the ISA layout of Eq. 9 is
``(p0, [(p1, [n1]), (p2, [n2]), ...])``.

Exponents may be floats or tensors (kept by reference, so autograd reaches them); the dtype helpers here
decide the working dtype from the exponents and the input.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


# --------------------------------------------------------------------------------------------------
# Tree structure
# --------------------------------------------------------------------------------------------------
@dataclass
class LeafRun:
    """Consecutive leaves ``start:stop`` that are direct children of one node."""

    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass
class Node:
    """Inner node: ``index`` is the position of its exponent in the pre-order exponent list."""

    index: int
    path: str
    children: list = field(default_factory=list)
    start: int = 0
    stop: int = 0

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def n_children(self) -> int:
        return sum(c.n if isinstance(c, LeafRun) else 1 for c in self.children)

    def child_sizes(self) -> list[int]:
        """n_{i,k} of Eq. 8: leaves under each child (1 for a leaf child)."""
        out: list[int] = []
        for c in self.children:
            out.extend([1] * c.n if isinstance(c, LeafRun) else [c.n])
        return out


def _is_number(x) -> bool:
    return isinstance(x, (numbers.Real, torch.Tensor, np.ndarray, np.generic)) and not isinstance(x, bool)


def _exponent_value(p, where: str) -> float:
    """Validate one exponent (float or one-element tensor) and return it as a float."""
    if isinstance(p, (torch.Tensor, np.ndarray)):
        numel = p.size if isinstance(p, np.ndarray) else p.numel()
        if numel != 1:
            raise ValueError(f"{where} must be a scalar, got shape {tuple(p.shape)}")
        v = float(p.detach().reshape(()).item()) if isinstance(p, torch.Tensor) else float(p.reshape(()))
    elif _is_number(p):
        v = float(p)
    else:
        raise ValueError(f"{where} must be a number, got {type(p).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite and > 0, got {v}")
    if v <= 0:
        raise ValueError(f"{where} must be > 0, got {v}")
    return v


class LpTree:
    """Static structure of an Lp-nested function (Eq. 6, 9) plus the exponents as given.

    ``exponents`` holds the objects passed in (floats or tensors, pre-order, root first) so that tensors
    that require grad stay in the graph.
    """

    def __init__(self, spec, validate: bool = True):
        if isinstance(spec, LpTree):
            self.root, self.exponents, self.nodes, self.n = spec.root, list(spec.exponents), spec.nodes, spec.n
            return
        self._validate = validate
        self.exponents: list = []
        self.nodes: list[Node] = []
        self._next_leaf = 0
        self.root = self._parse(spec, "root")
        self.n = self._next_leaf
        del self._next_leaf, self._validate

    def _parse(self, spec, path: str) -> Node:
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], (tuple, list))):
            raise ValueError(
                f"node {path} must be a (p, [children]) pair, got {spec!r}")
        p, children = spec
        if self._validate:
            _exponent_value(p, f"exponent of node {path}")
        if len(children) == 0:
            raise ValueError(f"node {path} is empty: it needs at least one child")
        node = Node(index=len(self.exponents), path=path, start=self._next_leaf)
        self.exponents.append(p)
        self.nodes.append(node)
        for k, child in enumerate(children):
            if isinstance(child, numbers.Integral) and not isinstance(child, bool):
                if child < 1:
                    raise ValueError(f"node {path}: child {k} is a leaf count {child}; it must be >= 1")
                run = LeafRun(self._next_leaf, self._next_leaf + int(child))
                self._next_leaf = run.stop
                # merge adjacent leaf runs so evaluation slices once
                if node.children and isinstance(node.children[-1], LeafRun):
                    node.children[-1].stop = run.stop
                else:
                    node.children.append(run)
            else:
                node.children.append(self._parse(child, f"{path}[{k}]"))
        node.stop = self._next_leaf
        return node

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def exponent_vector(self, dtype=None, device=None) -> torch.Tensor:
        """Exponents (pre-order) as one tensor on ``device`` (default: the first tensor exponent's, else the
        CPU), keeping autograd links of tensor entries."""
        dtype = dtype or _param_dtype(self.exponents) or torch.get_default_dtype()
        device = device if device is not None else _param_device(self.exponents)
        return torch.stack([_as_tensor(p, dtype, device).reshape(()) for p in self.exponents])

    def with_exponents(self, exponents: Sequence) -> "LpTree":
        """Same structure, new exponents (pre-order)."""
        if len(exponents) != self.n_nodes:
            raise ValueError(f"tree has {self.n_nodes} inner nodes but {len(exponents)} exponents were given")
        for node, p in zip(self.nodes, exponents):
            _exponent_value(p, f"exponent of node {node.path}")
        t = LpTree(self)
        t.exponents = list(exponents)
        return t

    def validate(self, exponents=None) -> None:
        for node, p in zip(self.nodes, self.exponents if exponents is None else exponents):
            _exponent_value(p, f"exponent of node {node.path}")

    def spec(self):
        """Back to the nested ``(p, [children])`` form."""
        def rec(node):
            ch = [c.n if isinstance(c, LeafRun) else rec(c) for c in node.children]
            return (self.exponents[node.index], ch)
        return rec(self.root)

    def layout(self):
        """Positions for drawing the tree (Fig. 4): leaves at y=0 spaced by 1, inner nodes above.

        Returns ``(nodes, edges)``: ``nodes`` is a list of dicts with keys ``x, y, kind ('inner'|'leaf'),
        label, index`` (exponent index or leaf coordinate); ``edges`` a list of ``(parent_id, child_id)``
        indices into ``nodes``.
        """
        nodes: list[dict] = []
        edges: list[tuple[int, int]] = []
        depth = _depth(self.root)

        def rec(node, level):
            my_id = len(nodes)
            nodes.append(dict(x=0.0, y=float(depth - level), kind="inner", index=node.index,
                              label=node.path))
            xs = []
            for c in node.children:
                if isinstance(c, LeafRun):
                    for j in range(c.start, c.stop):
                        cid = len(nodes)
                        nodes.append(dict(x=float(j), y=0.0, kind="leaf", index=j, label=f"z{j + 1}"))
                        edges.append((my_id, cid))
                        xs.append(float(j))
                else:
                    cid, cx = rec(c, level + 1)
                    edges.append((my_id, cid))
                    xs.append(cx)
            nodes[my_id]["x"] = float(np.mean(xs))
            return my_id, nodes[my_id]["x"]

        rec(self.root, 0)
        return nodes, edges

    def __repr__(self) -> str:
        return f"LpTree({self.spec()!r}, n={self.n})"


def _depth(node) -> int:
    return 1 + max((_depth(c) for c in node.children if isinstance(c, Node)), default=0)


def parse_tree(spec) -> LpTree:
    """Parse ``(p, [children])`` into an :class:`LpTree` (validates exponents and structure)."""
    return LpTree(spec)


def eq6_tree(p0=2.0, p1=2.0):
    """The tree of Eq. 6: f(z) = (|z1|^p0 + (|z2|^p1 + |z3|^p1)^(p0/p1))^(1/p0)."""
    return (p0, [1, (p1, [2])])


def isa_tree(p0, sizes: Sequence[int], exponents: Sequence):
    """The ISA tree of Eq. 9-10: root p0 over subspaces of ``sizes[i]`` leaves with exponent p_i."""
    sizes = list(sizes)
    if len(sizes) == 0:
        raise ValueError("ISA needs at least one subspace (sizes is empty)")
    if len(exponents) != len(sizes):
        raise ValueError(f"sizes has {len(sizes)} subspaces but exponents has {len(exponents)} entries")
    for i, k in enumerate(sizes):
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"sizes[{i}] must be an int >= 1, got {k!r}")
    return (p0, [(exponents[i], [int(k)]) for i, k in enumerate(sizes)])


# --------------------------------------------------------------------------------------------------
# dtype helpers
# --------------------------------------------------------------------------------------------------
def _param_dtype(params) -> torch.dtype | None:
    dt = None
    for p in params:
        if isinstance(p, torch.Tensor) and p.is_floating_point():
            dt = p.dtype if dt is None else torch.promote_types(dt, p.dtype)
    return dt


def _param_device(params) -> torch.device:
    """The device of the first tensor among ``params``, else the CPU (plain-float parameters)."""
    for p in params:
        if isinstance(p, torch.Tensor):
            return p.device
    return torch.device("cpu")


def _as_tensor(p, dtype, device=None) -> torch.Tensor:
    """A parameter (float or tensor) as a tensor of ``dtype`` on ``device`` (None: a tensor stays where it is,
    a float goes to the CPU). Made on the device it is used on, so that a plain-float exponent never puts a
    CPU tensor into a computation on an accelerator."""
    if isinstance(p, torch.Tensor):
        return p.to(dtype=dtype) if device is None else p.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(p, dtype=np.float64), dtype=dtype, device=device)


def _work_dtype(z: torch.Tensor, params) -> torch.dtype:
    dt = z.dtype if z.is_floating_point() else torch.get_default_dtype()
    pd = _param_dtype(params)
    return dt if pd is None else torch.promote_types(dt, pd)
