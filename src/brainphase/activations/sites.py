"""Where activations are read: the transformer blocks of a model and forward hooks on them."""

from __future__ import annotations

from collections.abc import Sequence

SITES = ("resid", "mlp")


def transformer_blocks(model):
    """The ModuleList of transformer blocks, wherever this architecture keeps it."""
    base = model.base_model
    for path in ("layers", "h", "blocks", "decoder.layers"):
        obj = base
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}; expected base_model.layers or .h")


def site_names(n_layers: int, sites: Sequence[str] = SITES, layers: Sequence[int] | None = None) -> list[str]:
    """``resid.0..L`` and ``mlp.1..L`` (restricted to ``layers`` if given), resid first."""
    unknown = set(sites) - set(SITES)
    if unknown:
        raise ValueError(f"unknown activation sites {sorted(unknown)}; use {SITES}")
    wanted = range(n_layers + 1) if layers is None else sorted(set(int(l) for l in layers))
    bad = [l for l in wanted if not 0 <= l <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range 0..{n_layers}")
    names = []
    for site in SITES:
        if site in sites:
            names += [f"{site}.{l}" for l in wanted if site == "resid" or l >= 1]
    return names


class Recorder:
    """Forward hooks that keep the latest output of each requested site."""

    def __init__(self, model, names: Sequence[str]):
        self.names = list(names)
        self.captured: dict = {}
        self._blocks = transformer_blocks(model)
        self._handles = []

    def _keep(self, name):
        def hook(module, args, output):
            self.captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def _keep_input(self, name):
        def hook(module, args, kwargs):
            self.captured[name] = args[0] if args else kwargs["hidden_states"]

        return hook

    def __enter__(self):
        for name in self.names:
            site, layer = name.split(".")
            layer = int(layer)
            if site == "resid" and layer == 0:
                # The embedding output is what block 1 receives (after any
                # architecture-specific scaling), as hidden_states[0] is.
                h = self._blocks[0].register_forward_pre_hook(self._keep_input(name), with_kwargs=True)
            elif site == "resid":
                h = self._blocks[layer - 1].register_forward_hook(self._keep(name))
            else:
                h = self._blocks[layer - 1].mlp.register_forward_hook(self._keep(name))
            self._handles.append(h)
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.captured = {}
