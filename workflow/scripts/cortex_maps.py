"""One subject's cortical maps — encoding r at the last checkpoint, the detachment difference, a crosscoder
latent's decoder weights — on fsaverage (MNI-space data) or on the subject's pycortex flatmap."""

import logging

import numpy as np
import pandas as pd

from brainphase.contracts.brain import read_coords
from brainphase.cortex.maps import decoder_weights, detachment_difference, encoding_r
from brainphase.figures import FigureSelection, save_figure
from brainphase.runtime import setup_job

snakemake = snakemake  # noqa: F821
setup_job(snakemake.log[0])
log = logging.getLogger("cortex_maps")
p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
coords = next(iter(read_coords([inp.brain]).values()))
voxels = pd.read_parquet(inp.voxels)
voxels = voxels[(voxels["dataset"] == wc.dataset) & (voxels["subject"] == wc.subject)]
shown = FigureSelection.first(voxels, ["model", "site"])
voxels = shown.rows(voxels)
who = f"{shown['model']} · {wc.dataset}/{wc.subject}"
# name -> (per-voxel values, caption, colourbar label)
maps = {"encoding_r": (*encoding_r(voxels, len(coords), p.map_layer), "test r")}
if inp.get("phases"):
    phases = pd.read_parquet(inp.phases)
    maps["detachment_difference"] = (*detachment_difference(voxels, phases[phases["model"] == shown["model"]],
                                                            len(coords)), "r difference")
if inp.get("weights"):
    weights = pd.read_parquet(inp.weights)
    maps["crosscoder_decoder"] = (*decoder_weights(weights, len(coords)), "decoder weight")
for name, (values, caption, _) in maps.items():
    log.info("%s: %s; %d of %d voxels without a value (drawn blank)", name, caption, int(np.isnan(values).sum()),
             len(values))

if p.kind == "surface":
    from brainphase.cortex.drawing import surface_figure
    from brainphase.cortex.surface import project_to_fsaverage

    affine = shape = None
    if p.reference:
        import nibabel as nib

        ref = nib.load(p.reference)
        affine, shape = ref.affine, ref.shape[:3]
    rows = []
    for name, (values, caption, label) in maps.items():
        surf = project_to_fsaverage(values, coords, affine, shape, source=inp.brain)
        for hemi, v in surf.items():
            log.info("%s, %s hemisphere: %d of %d vertices coloured", name, hemi, int(np.isfinite(v).sum()), len(v))
            rows.append(pd.DataFrame({"map": name, "hemi": hemi, "vertex": np.arange(len(v)), "value": v}))
        save_figure(surface_figure(surf, f"{who}\n{caption}", label), getattr(snakemake.output, name), dpi=p.dpi)
    pd.concat(rows, ignore_index=True).to_parquet(snakemake.output.table)
else:
    from brainphase.cortex.flatmap import flatmap_figure

    db = p.pycortex
    for name, (values, caption, label) in maps.items():
        fig = flatmap_figure(values, db["filestore"], db["subject"], db["xfm"], db["mask"], f"{who} · {caption}",
                             label)
        save_figure(fig, getattr(snakemake.output, name), dpi=p.dpi)
