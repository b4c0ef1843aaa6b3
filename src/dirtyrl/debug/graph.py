"""Backward-graph instruments: the parameters no gradient can reach, and torchviz diagrams.

Backward traverses a loss's graph and accumulates gradients in the parameter leaves, the
``AccumulateGrad`` nodes, so every trainable weight must hang off the graph of the loss. A
weight that does not is never trained. ``dirtyrl graph`` (commands/graph.py) draws the
algorithms' losses with these functions; the doctor's reachability checks use them too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dirtyrl.errors import UserError


def graph_leaves(loss: torch.Tensor) -> set[int]:
    """ids of every tensor accumulated by ``loss.backward()`` (the AccumulateGrad leaves).

    >>> w = torch.ones(2, requires_grad=True)
    >>> graph_leaves((w * 3).sum()) == {id(w)}
    True
    """
    seen, leaves = set(), set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad holds its leaf tensor
        if variable is not None:
            leaves.add(id(variable))
        stack.extend(fn for fn, _ in node.next_functions)
    return leaves


def unreachable_parameters(model: nn.Module, loss: torch.Tensor) -> list[str]:
    """Names of the trainable parameters that ``loss`` has no path to: they would never learn.

    >>> net = nn.ModuleDict({"used": nn.Linear(2, 1), "forgotten": nn.Linear(2, 1)})
    >>> unreachable_parameters(net, net["used"](torch.ones(1, 2)).sum())
    ['forgotten.weight', 'forgotten.bias']
    """
    leaves = graph_leaves(loss)
    return [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in leaves]


def render_graph(loss: torch.Tensor, model: nn.Module, stem: Path, formats: list[str]) -> list[Path]:
    """Draw ``loss``'s backward graph with torchviz (parameters labelled by name); write the .dot
    source and each of ``formats`` rendered by Graphviz's ``dot``."""
    import torchviz  # optional dependency, imported only when a graph is asked for

    dot = torchviz.make_dot(loss, params=dict(model.named_parameters()))
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".dot")]
    paths[0].write_text(dot.source)
    for fmt in formats:
        dot.format = fmt
        try:
            paths.append(Path(dot.render(filename=stem.name, directory=str(stem.parent), cleanup=True)))
        except Exception as exc:  # graphviz.ExecutableNotFound and friends: say what to install
            raise UserError(
                f"Graphviz could not render {fmt} ({type(exc).__name__}); install it: apt-get install graphviz"
            ) from exc
    return paths


def string_of_graphs(pngs: list[Path], out: Path) -> Path:
    """The per-step PNGs side by side, top-aligned: the seed's "string of backward graphs"."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pngs]
    gap = 24
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    strip = Image.new("RGB", (width, max(im.height for im in images)), "white")
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.width + gap
    strip.save(out)
    return out
