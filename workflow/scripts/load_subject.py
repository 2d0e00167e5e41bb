"""One subject of a real dataset into the brain contract (with its own unit timings) and its unit table."""

from brainphase.io import write_parquet
from brainphase.loaders.dataset import load_subject, subject_events
from brainphase.runtime import setup_job
from brainphase.contracts.brain import write_brain

snakemake = snakemake  # noqa: F821
log = setup_job(snakemake.log[0])
p = snakemake.params
wc = snakemake.wildcards
log.info("%s: loading subject %s from %s (%s) with %s", wc.dataset, wc.subject, p.path, p.source, p.options)
sub = load_subject(p.source, p.path, wc.subject, p.options)
write_parquet(sub.stimuli, snakemake.output.words)
write_brain(snakemake.output.brain, sub.runs, sub.tr, sub.coords, sfreq=sub.sfreq, events=subject_events(sub.stimuli),
            attrs={"source": p.source, "subject": wc.subject})
n = sum(r.data.shape[0] for r in sub.runs.values())
log.info("%d runs, %d %s x %d channels, %d units", len(sub.runs), n, "samples" if sub.sfreq else "TRs",
         sub.coords.shape[0], len(sub.stimuli))
