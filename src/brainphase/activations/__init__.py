"""Extract a model's activations for a stimulus set.

Sites: ``resid.{l}`` is the residual stream entering block l+1 — ``resid.0``
is the embedding output, ``resid.l`` the raw output of block l (before the
final norm, so every layer is on the same footing) — and ``mlp.{l}`` is the
MLP output of block l. All of them come from forward hooks on one forward
pass per input sequence (:mod:`.sites`).

Poolings: ``word`` (last token of each word, the preceding story as
context), ``last`` (last token of a unit's own text; a text longer than the
model's positions is dropped and counted by
:func:`.extract.extract_last_token_activations`, never cut) and ``mean`` (mean over
a unit's own tokens, BOS excluded), and ``token`` (every token of every
story, BOS excluded, each read with the preceding story as context: one row
per token rather than per unit, for sparse autoencoders). Every sequence starts with the
tokenizer's BOS, prepended here rather than left to the tokenizer, so
models whose tokenizers do not add it themselves (Pythia) are treated alike.
A context cut by ``context_window`` or by the model's maximum length is a
plain slice of the story's tokens: it starts mid-story, without a BOS, as
the packed windows these models were trained on do (:mod:`.items`).

The stored cache (safetensors, float16) is the contract in
:mod:`brainphase.contracts.activations`.
"""
