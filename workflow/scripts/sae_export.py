"""Write one trained SAE in the on-disk layout sae-lens loads, next to our own file."""

from pathlib import Path

from brainphase.runtime import setup_job
from brainphase.sae.model import load_sae
from brainphase.sae.saelens_format import export_saelens, model_reference

snakemake = snakemake  # noqa: F821
out = snakemake.output
log = setup_job(snakemake.log[0], snakemake.threads, int(snakemake.wildcards.seed))

sae, meta = load_sae(snakemake.input.sae)
provenance = {k: meta[k] for k in ("model", "step", "seed", "tokens", "tokens_trained") if k in meta}
config, weights = export_saelens(Path(out.config).parent, sae, site=meta["site"], layer=meta["layer"],
                                 provenance=provenance, **model_reference(snakemake.params.model, meta["step"]))
if {str(config), str(weights)} != {str(out.config), str(out.weights)}:
    raise ValueError(f"the export wrote {config} and {weights}, not the rule's outputs {out.config}, {out.weights}; "
                     "name them cfg.json and sae_weights.safetensors in one folder (workflow/rules/sae.smk)")
log.info("%s/%s seed %s: %d latents, k %d at %s.%s -> %s", meta["model"], meta["step"], meta["seed"],
         sae.n_latents, sae.k, meta["site"], meta["layer"], config.parent)
