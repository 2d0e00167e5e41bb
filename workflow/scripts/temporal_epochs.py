"""Word-locked epochs of one MEG subject, cut once for every checkpoint's temporal fit."""

from brainphase.runtime import setup_job
from brainphase.contracts.brain import check_alignment, read_brain, subject_view
from brainphase.contracts.stimuli import read_stimuli
from brainphase.temporal.epochs import word_epochs, write_epochs

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
t = snakemake.params.temporal
stimuli = read_stimuli(snakemake.input.stimuli)
brain = read_brain(snakemake.input.brain)
# A real subject hears some of the set's units on its own clock; the epochs'
# rows still index the whole set, which is what the activation cache holds.
view, rows = subject_view(stimuli, brain, snakemake.input.stimuli, snakemake.input.brain)
check_alignment(view, brain, snakemake.input.stimuli, snakemake.input.brain)
epochs = word_epochs(brain, view, t["tmin"], t["tmax"], tuple(t["baseline"]) if t["baseline"] else None,
                     t["decim"])
if rows is not None:
    epochs.rows = rows[epochs.rows]
write_epochs(snakemake.output.epochs, epochs)
log.info("%d words x %d channels x %d lags (%.3f..%.3f s) of %d words in the stimulus set",
         *epochs.data.shape, epochs.times[0], epochs.times[-1], len(stimuli))
