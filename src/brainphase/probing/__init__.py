"""Probing the layer activations for benchmark answers.

Two directions, both scored on held-out items of one fixed split:

* answers -> neurons (:mod:`.neurons`), the direction of Nakagi et al. 2025: from the *answer matrix* (items x
  choices, 1 = correct choice, 0 = others) predict every neuron of a layer
  by ridge regression; the score is the Pearson r per neuron on the test
  items, summarised by its mean over neurons and by its histogram (bins of
  0.01); its uncertainty is an item bootstrap (test items resampled with
  replacement, the same draws at every checkpoint, so checkpoints are
  paired);
* neurons -> answer (:mod:`.choice`), the usual direction: a linear
  classifier from the activation to the index of the correct choice; the
  score is held-out accuracy, reported with its chance levels.

Arrays in, arrays out: the caller extracts the last-token activations of the
question prompts (as lm-eval renders them, see
:mod:`brainphase.evals.prompts`) and the correct-choice indices;
:func:`align_items` (:mod:`.items`) matches them by unit id and
:func:`probe_task` (:mod:`.task`) runs every layer.
"""

from .choice import DEFAULT_CS, ChoiceProbeResult, choice_probe
from .items import AlignedItems, align_items, answer_matrix, split_items
from .neurons import DEFAULT_ALPHAS, NeuronProbeResult, bootstrap_draws, item_bootstrap, neuron_probe, r_histogram
from .task import probe_checkpoint, probe_task

__all__ = [
    "DEFAULT_ALPHAS", "DEFAULT_CS", "AlignedItems", "ChoiceProbeResult", "NeuronProbeResult", "align_items",
    "answer_matrix", "bootstrap_draws", "choice_probe", "item_bootstrap", "neuron_probe", "probe_checkpoint",
    "probe_task", "r_histogram", "split_items",
]
