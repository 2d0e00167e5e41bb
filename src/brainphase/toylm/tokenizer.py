"""Byte-level BPE tokenizer for the toy LM, wrapped for ``transformers``.

Byte-level so that any text (Latin or kana) encodes without unknown tokens;
BOS is prepended by the backend's post-processor so that every consumer
(our activation code, lm-eval, ``AutoTokenizer`` after a reload) sees the
same ids without having to remember to add it.
"""

from __future__ import annotations

from collections.abc import Iterable

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
SPECIAL_TOKENS = (BOS, EOS, PAD)


def train_tokenizer(documents: Iterable[str], vocab_size: int = 1000, min_frequency: int = 2,
                    model_max_length: int | None = None):
    """Train a byte-level BPE on ``documents``; return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes up front: a character unseen in training still encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(documents, trainer)
    bos_id = backend.token_to_id(BOS)
    # Offsets stay untrimmed (a token " cat" covers its leading space); word
    # mapping only needs each token's start, which is exact either way.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, add_bos_token=True, **kwargs
    )
