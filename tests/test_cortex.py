"""Cortical maps: per-voxel values onto fsaverage (planted blobs in MNI space), the figure, the pycortex voxel
order and flatmap, and the maps taken from the encoding and phase tables."""

import numpy as np
import pandas as pd
import pytest

from brainphase.cortex.maps import decoder_weights, detachment_difference, encoding_r
from brainphase.cortex.surface import DEPTHS, fsaverage_meshes, project_to_fsaverage, voxel_grid
from brainphase.phases import DETACHMENT

# Two 3x3x3-voxel blobs in MNI mm: left superior temporal gyrus, right precuneus (medial).
BLOBS = {"left": ((-60.0, -22.0, 6.0), 0.5), "right": ((8.0, -60.0, 40.0), -0.3)}


@pytest.fixture(scope="module")
def mni():
    """nilearn's MNI152 2 mm grid (its own template, not our writer) and the planted blob voxels on it."""
    from nilearn.datasets import load_mni152_template

    tmpl = load_mni152_template(resolution=2)
    index, values = [], []
    for centre, value in BLOBS.values():
        c = np.round(np.linalg.inv(tmpl.affine) @ [*centre, 1.0])[:3].astype(int)
        for off in np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3):
            index.append(c + off)
            values.append(value)
    index = np.array(index)
    coords = (tmpl.affine @ np.c_[index, np.ones(len(index))].T)[:3].T
    return tmpl, index, coords, np.array(values)


def expected_coloured(meshes, hemi, affine, index):
    """Vertices with a ribbon sample within one voxel (on every axis) of a planted voxel: trilinear support."""
    pial = meshes["pial"].parts[hemi].coordinates
    white = meshes["white_matter"].parts[hemi].coordinates
    samples = pial[:, None, :] + DEPTHS[None, :, None] * (white - pial)[:, None, :]
    vox = (np.linalg.inv(affine) @ np.c_[samples.reshape(-1, 3), np.ones(samples.size // 3)].T)[:3].T
    near = np.zeros(len(vox), bool)
    for v in index:
        near |= (np.abs(vox - v) < 1).all(axis=1)
    return near.reshape(len(pial), len(DEPTHS)).any(axis=1)


def test_planted_blobs_colour_the_vertices_around_them(mni):
    tmpl, index, coords, values = mni
    meshes = fsaverage_meshes()
    surf = project_to_fsaverage(values, coords, tmpl.affine, tmpl.shape, meshes=meshes)
    for hemi, (_, value) in BLOBS.items():
        expected = expected_coloured(meshes, hemi, tmpl.affine, index)
        coloured = np.isfinite(surf[hemi])
        assert expected.sum() > 10, "the planted blob should reach the cortex"
        np.testing.assert_array_equal(coloured, expected)
        # Each blob is uniform and far from the other: every coloured vertex shows its value, unblended.
        np.testing.assert_allclose(surf[hemi][coloured], value, rtol=1e-5)
    # The grid inferred from the coordinates alone places the voxels identically.
    inferred = project_to_fsaverage(values, coords, meshes=meshes)
    for hemi in surf:
        np.testing.assert_allclose(inferred[hemi], surf[hemi], rtol=1e-5, equal_nan=True)


def test_missing_voxels_are_blank_not_zero(mni):
    tmpl, _, coords, values = mni
    values = values.copy()
    values[values < 0] = np.nan  # the right blob's voxels have no value
    surf = project_to_fsaverage(values, coords, tmpl.affine, tmpl.shape)
    assert np.isnan(surf["right"]).all()
    assert np.isfinite(surf["left"]).sum() > 10


def test_voxel_grid_rejects_coordinates_off_the_grid(mni):
    tmpl, _, coords, _ = mni
    with pytest.raises(ValueError, match="off the grid.*cortex reference"):
        voxel_grid(coords + 0.7, tmpl.affine)
    affine, shape, index = voxel_grid(coords)
    np.testing.assert_allclose((affine @ np.c_[index, np.ones(len(index))].T)[:3].T, coords)


def test_surface_figure_has_four_views_and_one_colourbar(mni):
    from brainphase.cortex.drawing import surface_figure
    from brainphase.figures import plt

    tmpl, _, coords, values = mni
    fig = surface_figure(project_to_fsaverage(values, coords, tmpl.affine, tmpl.shape), "planted", "r difference")
    views = [ax for ax in fig.axes if ax.name == "3d"]
    bars = [ax for ax in fig.axes if ax.name != "3d"]
    assert [ax.get_title() for ax in views] == ["left · lateral", "left · medial", "right · lateral",
                                                "right · medial"]
    assert len(bars) == 1
    lo, hi = bars[0].get_ylim()
    assert lo == pytest.approx(-hi)  # symmetric about 0 for a signed map
    plt.close(fig)


def voxel_table(r_by_step: dict[str, np.ndarray], layer: int = 1) -> pd.DataFrame:
    rows = []
    for tokens, (step, r) in enumerate(r_by_step.items()):
        for lay in (0, layer):
            rows.append(pd.DataFrame({"model": "m", "step": step, "tokens": float(tokens * 100), "layer": lay,
                                      "voxel": np.arange(len(r)), "r": r if lay == layer else r * 0.1}))
    return pd.concat(rows, ignore_index=True)


def test_detachment_difference_is_r_after_minus_before():
    rng = np.random.default_rng(0)
    r = {s: rng.normal(size=6) for s in ("s0", "s1", "s2", "s3")}
    voxels = voxel_table(r)
    phases = pd.DataFrame({"phase": [0, 1], "label": ["alignment", DETACHMENT], "start_tokens": [0.0, 100.0],
                           "end_tokens": [100.0, 290.0], "encoding_layer": [1, 1]})
    diff, caption = detachment_difference(voxels, phases, 7)
    np.testing.assert_allclose(diff[:6], r["s3"] - r["s1"])
    assert np.isnan(diff[6]) and "detachment" in caption
    last, _ = encoding_r(voxels, 6, "best")
    np.testing.assert_allclose(last, r["s3"])


def write_mask(path, shape, affine):
    import nibabel as nib

    mask = np.zeros(shape, np.uint8)
    mask[20:80, 20:80, 10:25] = 1
    mask[30:40, 50:52, 12] = 0  # an irregular hole: C order over (z, y, x) differs from (x, y, z)
    nib.save(nib.Nifti1Image(mask, affine), str(path))
    return mask


def test_flatmap_volume_puts_voxels_where_the_lebel_loader_places_them(tmp_path):
    from brainphase.cortex.flatmap import subject_volume
    from brainphase.loaders.lebel import _pycortex_coords

    affine = np.diag([2.5, 2.5, 3.0, 1.0])
    affine[:3, 3] = (-90.0, -120.0, -40.0)
    mask = write_mask(tmp_path / "mask_thick.nii.gz", (100, 100, 31), affine)
    n = int(mask.sum())
    coords = _pycortex_coords(tmp_path / "mask_thick.nii.gz", n)
    volume = subject_volume(np.arange(n, dtype=float), mask.T != 0)  # (z, y, x), as pycortex holds volumes
    xyz = np.round((np.linalg.inv(affine) @ np.c_[coords, np.ones(n)].T)[:3].T).astype(int)
    np.testing.assert_array_equal(volume[xyz[:, 2], xyz[:, 1], xyz[:, 0]], np.arange(n))
    assert np.isnan(volume[~(mask.T != 0)]).all()
    with pytest.raises(ValueError, match="name the mask the responses were extracted with"):
        subject_volume(np.zeros(n - 1), mask.T != 0)


@pytest.fixture
def s1_filestore(tmp_path):
    """pycortex's shipped subject S1 in a scratch filestore (its caches land there), with a written mask."""
    cortex = pytest.importorskip("cortex", reason="pycortex is not installed (pip install pycortex)")
    import nibabel as nib
    from cortex import database

    shipped = f"{database.default_filestore}/S1"
    subject = tmp_path / "S1"
    (subject / "transforms").mkdir(parents=True)
    for part in ("surfaces", "anatomicals", "overlays.svg"):
        (subject / part).symlink_to(f"{shipped}/{part}")
    (subject / "transforms/fullhead").mkdir()
    ref = f"{shipped}/transforms/fullhead/reference.nii.gz"
    for name in ("matrices.xfm", "reference.nii.gz"):
        (subject / "transforms/fullhead" / name).symlink_to(f"{shipped}/transforms/fullhead/{name}")
    img = nib.load(ref)
    mask = write_mask(subject / "transforms/fullhead/mask_thick.nii.gz", img.shape[:3], img.affine)
    before = database.db.filestore
    yield cortex, tmp_path, mask
    database.db.filestore = before
    database.db.reload_subjects()


def test_flatmap_on_pycortex_s1_shows_the_planted_values(s1_filestore):
    from brainphase.cortex.flatmap import flatmap_figure
    from brainphase.figures import plt

    cortex, filestore, mask = s1_filestore
    values = np.full(int(mask.sum()), 0.4)
    fig = flatmap_figure(values, filestore, "S1", "fullhead", "thick", "planted", "r", height=128,
                         curvature=False, thick=1)
    shown = [im.get_array() for ax in fig.axes for im in ax.get_images()]
    pixels = np.concatenate([np.ma.filled(np.ma.asarray(a, float), np.nan).ravel() for a in shown])
    pixels = pixels[np.isfinite(pixels)]
    assert len(pixels) > 500 and np.allclose(np.unique(pixels), 0.4)
    plt.close(fig)
    with pytest.raises(FileNotFoundError, match="pycortex.mask"):
        flatmap_figure(values, filestore, "S1", "fullhead", "thin", "planted", "r")


class Named(dict):
    """What a Snakemake script sees of its inputs and outputs: attributes and ``get``."""

    __getattr__ = dict.__getitem__


def test_decoder_weights_draw_the_strongest_latent():
    weights = pd.DataFrame({"latent": [7, 7, 3, 3], "class": ["shared"] * 2 + ["brain"] * 2, "r": [0.1] * 2 + [0.8] * 2,
                            "voxel": [0, 1, 0, 1], "weight": [0.5, -0.5, 9.0, 9.0], "step": "s9"})
    values, caption = decoder_weights(weights, 3)
    np.testing.assert_allclose(values, [0.5, -0.5, np.nan])
    assert "latent 7" in caption


def test_workflow_script_writes_the_surface_maps_of_an_mni_subject(mni, tmp_path):
    """workflow/scripts/cortex_maps.py on the planted blobs: per-vertex table and one figure per map."""
    import runpy
    import types
    from pathlib import Path

    from brainphase.contracts.brain import BrainRun, write_brain

    tmpl, index, coords, values = mni
    write_brain(tmp_path / "01.h5", {"r1": BrainRun(np.zeros((3, len(coords)), np.float32), "train")}, 2.0, coords)
    voxels = voxel_table({"s0": values * 0.5, "s1": values})
    voxels[["dataset", "subject", "site"]] = ("mni", "01", "resid")
    voxels.to_parquet(tmp_path / "voxels.parquet")
    # One map keeps the test short; the detachment difference is checked on its own above.
    out = Named(table=str(tmp_path / "surface.parquet"), encoding_r=[str(tmp_path / "encoding_r.png")])
    snakemake = types.SimpleNamespace(
        input=Named(voxels=str(tmp_path / "voxels.parquet"), brain=str(tmp_path / "01.h5")),
        output=out, log=[str(tmp_path / "log.txt")], wildcards=types.SimpleNamespace(dataset="mni", subject="01"),
        params=types.SimpleNamespace(kind="surface", map_layer="best", dpi=40, reference=""))
    runpy.run_path(str(Path(__file__).parents[1] / "workflow/scripts/cortex_maps.py"),
                   init_globals={"snakemake": snakemake})
    table = pd.read_parquet(out.table)
    meshes = fsaverage_meshes()
    assert Path(out["encoding_r"][0]).stat().st_size > 0
    assert set(table["map"]) == {"encoding_r"}
    for hemi, (_, value) in BLOBS.items():
        got = table[table["hemi"] == hemi]["value"].to_numpy()
        coloured = np.isfinite(got)
        assert coloured.sum() == expected_coloured(meshes, hemi, tmpl.affine, index).sum()
        np.testing.assert_allclose(got[coloured], value, rtol=1e-5)  # the last checkpoint's r
