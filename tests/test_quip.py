"""QUIP/GAP XML import and export (ase_mlcalc.interop.quip) against quippy, on gap_fit's own files.

The files in tests/data/quip/ were made by gap_fit (command lines in tests/data/README.md and
tests/data/quip/make_models.py). quippy (quippy-ase, the test extra) is the reference; tests that
need it skip without it.
"""

import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import ase_mlcalc
from ase_mlcalc import LennardJones, ModelFileError, testing
from ase_mlcalc.interop.quip import GAP_VERSION_WRITTEN, UnsupportedQuipFeature, read_quip_xml, write_quip_xml
from ase_mlcalc.training import fit_gap

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "quip")
FILES = {"mo_soap": ["Mo"], "cuau_2b_soap": ["Cu", "Au"], "cuau_soap_options": ["Cu", "Au"]}
GAP_FIT_VERSION = 1769700636  # what the gap_fit that made the files writes
TOL = 1e-8


def xml_path(name):
    return os.path.join(DATA, f"{name}.xml")


def read(path):
    with open(path) as f:
        return f.read()


# ----------------------------------------------------------------------------- structures and comparisons

def structures(symbols, seed=0):
    """Rattled supercell, sheared (triclinic) supercell, a 2-atom cell smaller than the cutoff, an open cluster."""
    rng = np.random.default_rng(seed)
    if symbols == ["Mo"]:
        a, scale = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((2, 2, 3)), 1.0
    elif symbols[0] in ("Cu", "Au"):
        a, scale = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2)), 1.0
    else:  # the noble gases of testing.labelled_frames
        a, scale = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((2, 2, 1)), 1.45
    a.symbols[:] = symbols[0]
    if len(symbols) > 1:
        a.symbols[rng.choice(len(a), len(a) // 3, replace=False)] = symbols[1]
    a.rattle(0.1, seed=seed + 1)
    sheared = a.copy()
    sheared.set_cell(a.cell.array @ np.array([[1.02, 0.07, -0.03], [-0.03, 0.97, 0.06], [0.04, -0.02, 1.01]]),
                     scale_atoms=True)
    small = Atoms([symbols[0], symbols[-1]], positions=scale * np.array([[0.1, 0.0, -0.1], [1.5, 1.6, 1.7]]),
                  cell=scale * np.array([[2.9, 0.2, 0.1], [0.1, 3.1, -0.2], [0.2, 0.0, 3.3]]), pbc=True)
    cluster = a[:10].copy()
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    return {"rattled": a, "sheared": sheared, "small cell": small, "cluster": cluster}


def results(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    out = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "energies": a.get_potential_energies()}
    if a.pbc.all():
        out["stress"] = a.get_stress()
    return out


def rel(x, y, floor=1e-6):
    """max |x - y| / max |y| (the denominator at least ``floor``: eV, eV/Å, eV/Å^3)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.abs(x - y).max() / max(np.abs(y).max(), floor))


def assert_agree(ours, ref, symbols, tol=TOL):
    for name, atoms in structures(symbols).items():
        a, b = results(ours, atoms), results(ref, atoms)
        for key in b:
            assert rel(a[key], b[key]) < tol, f"{name}: {key} differs by {rel(a[key], b[key]):.2e} (relative)"


@pytest.fixture
def quippy_potential():
    """quippy's Potential for a path (absolute: a failed quippy load changes the working directory)."""
    pytest.importorskip("quippy")
    from quippy.potential import Potential

    cwd = os.getcwd()
    yield lambda path: Potential(param_filename=os.path.abspath(os.fspath(path)))
    os.chdir(cwd)


# ----------------------------------------------------------------------------- our models to export

@pytest.fixture(scope="module")
def fitted():
    """GAPs fitted by our fit_gap: SOAP on one species; distance_2b + SOAP on two (channel order Kr, Ar)."""
    one = testing.labelled_frames(4, ["Ar"], seed=10, repeat=(2, 2, 1))
    two = testing.labelled_frames(4, ["Ar", "Kr"], seed=30, repeat=(2, 2, 1))
    return {
        "soap, one species": (fit_gap(one, species=["Ar"], cutoff=4.8, n_max=3, l_max=3, n_sparse=15,
                                      progress=False), ["Ar"]),
        "distance_2b + soap, two species": (fit_gap(two, species=["Kr", "Ar"], cutoff=4.8, n_max=3, l_max=3,
                                                    n_sparse=15, distance_2b=dict(cutoff=5.0, delta=0.1, theta=0.5,
                                                                                  n_sparse=8), progress=False),
                                            ["Ar", "Kr"]),
        "distance_2b, two species": (fit_gap(two, species=["Ar", "Kr"], progress=False, terms=[
            dict(kind="distance_2b", cutoff=5.0, delta=0.1, theta=0.5, n_sparse=8)]), ["Ar", "Kr"]),
    }


def assert_bit_identical(back, model):
    """Every buffer (but the variance factors, which the XML has no place for: an import stores none),
    hyper-parameters (but ``variance``), species."""
    assert back.species == model.species
    assert {**back.hyperparameters(), "variance": model.variance} == model.hyperparameters()
    ref, got = model.state_dict(), back.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        if key in ("kmm_factor", "posterior_factor"):
            assert got[key].shape == (0, 0), key
            continue
        assert got[key].dtype == ref[key].dtype and torch.equal(got[key], ref[key]), key
    assert back.outputs == {} and not back.has_variance


# ----------------------------------------------------------------------------- import

@pytest.mark.parametrize("name", list(FILES))
def test_import_equals_quippy(name, quippy_potential):
    """Energy, forces, stress and per-atom energies of gap_fit's file: ours equal quippy's to 1e-8."""
    assert_agree(ase_mlcalc.load(xml_path(name)), quippy_potential(xml_path(name)), FILES[name])


def test_import_maps_every_option():
    mo = read_quip_xml(xml_path("mo_soap"))
    assert mo.species == (42,) and [t.kind for t in mo.terms] == ["soap"]
    (t,) = mo.terms
    assert (t.n_sparse, t.zeta, t.delta, t.covariance_sigma0) == (20, 4, 1.0, 0.0)
    assert t.descriptor.central_reference_all_species  # QUIP's default for one species when not given
    assert mo.metadata["gap_version"] == GAP_FIT_VERSION and "gap_file=mo_soap.xml" in mo.metadata["command_line"]
    assert mo.metadata["dropped_e0"] == {}
    assert mo.e0.tolist() == [float(re.search(r'<e0 Z="42" value="([^"]+)"', read(xml_path("mo_soap")))[1])]

    cuau = read_quip_xml(xml_path("cuau_2b_soap"))
    assert cuau.species == (29, 79)  # species_Z order
    pair, soap = cuau.terms
    assert (pair.kind, pair.n_sparse, soap.kind, soap.n_sparse) == ("distance_2b", 24, "soap", 16)
    assert (pair.cutoff, pair.cutoff_transition_width, pair.delta, pair.theta, pair.f0) == (5.0, 1.0, 0.5, 1.0, 0.0)
    assert pair.sparse_species.tolist() == [0] * 8 + [1] * 8 + [2] * 8  # Cu-Cu, Cu-Au, Au-Au
    assert soap.sparse_species.tolist() == [0] * 8 + [1] * 8  # Z=29, then Z=79
    assert not soap.descriptor.central_reference_all_species  # QUIP's default for two species
    # the file's sparseCutoff, bit for bit (not recomputed), and alpha in the file's order
    coords = ET.parse(xml_path("cuau_2b_soap")).getroot().findall(".//gpCoordinates")
    scut = [float(x.get("sparseCutoff")) for c in coords[:3] for x in c.findall("sparseX")]
    alpha = [float(x.get("alpha")) for c in coords for x in c.findall("sparseX")]
    assert pair.sparse_cutoff.tolist() == scut and cuau.alpha.tolist() == alpha
    assert cuau.e0.tolist() == [3.5099999999999998, 3.7999999999999998]

    opt = read_quip_xml(xml_path("cuau_soap_options"))
    (t,) = opt.terms  # one coordinate with Z=0: its 12 points once per centre species
    assert t.n_sparse == 24 and t.sparse_species.tolist() == [0] * 12 + [1] * 12
    assert torch.equal(t.sparse_points[:12], t.sparse_points[12:]) and torch.equal(opt.alpha[:12], opt.alpha[12:])
    d = t.descriptor
    assert (d.central_weight, d.central_reference_all_species, t.covariance_sigma0, t.zeta) == (0.5, True, 0.2, 2.5)
    assert (d.cutoff, d.cutoff_transition_width, d.n_max, d.l_max, d.atom_sigma) == (4.0, 0.8, 2, 2, 0.6)


def test_imported_model_has_no_uncertainty():
    calc = ase_mlcalc.load(xml_path("mo_soap"), uncertainty=True)
    atoms = structures(["Mo"])["rattled"]
    atoms.calc = calc
    atoms.get_potential_energy()
    assert "energy_uncertainty" not in calc.results
    with pytest.raises(Exception, match="uncertainty"):
        calc.get_property("energy_uncertainty", atoms)


def test_imported_model_passes_the_contract(tmp_path):
    calc = ase_mlcalc.load(xml_path("cuau_2b_soap"))
    s = structures(["Cu", "Au"])
    crystal, cluster = s["sheared"], s["cluster"]
    testing.check_forces_finite_differences(calc, crystal)
    testing.check_stress_finite_differences(calc, crystal)
    testing.check_energies_add_up(calc, crystal)
    testing.check_invariances(calc, crystal)
    testing.check_invariances(calc, cluster)
    testing.check_periodic_images(calc, s["small cell"])
    testing.check_save_load_fresh_process(calc, crystal, str(tmp_path))


def test_e0_of_elements_outside_the_model_is_dropped(tmp_path):
    text = read(xml_path("mo_soap")).replace('<e0 Z="1" value=".00000000000000000E+000"/>',
                                                    '<e0 Z="1" value="-0.5"/>')
    for f in os.listdir(DATA):
        if f.startswith("mo_soap.xml.sparseX"):
            shutil.copy(os.path.join(DATA, f), tmp_path)
    (tmp_path / "mo_soap.xml").write_text(text)
    m = read_quip_xml(tmp_path / "mo_soap.xml")
    assert m.species == (42,) and m.metadata["dropped_e0"] == {"H": -0.5}


# ----------------------------------------------------------------------------- export

@pytest.mark.parametrize("case", ["soap, one species", "distance_2b + soap, two species", "distance_2b, two species"])
def test_export_equals_quippy(case, fitted, quippy_potential, tmp_path):
    calc, symbols = fitted[case]
    calc.save(tmp_path / "gap.xml")  # .xml: the QUIP format
    text = (tmp_path / "gap.xml").read_text()
    assert f'gap_version="{GAP_VERSION_WRITTEN}"' in text and GAP_VERSION_WRITTEN == 1426512068
    assert max(map(len, text.splitlines())) < 1000  # FoX's line limit
    assert_agree(calc, quippy_potential(tmp_path / "gap.xml"), symbols)
    calc.save(tmp_path / "gap.quip", format="quip")
    assert (tmp_path / "gap.quip").read_text() == text


@pytest.mark.parametrize("separate", [False, True], ids=["inline", "sparseX file"])
@pytest.mark.parametrize("case", ["soap, one species", "distance_2b + soap, two species", "distance_2b, two species"])
def test_import_of_export_is_bit_identical(case, separate, fitted, tmp_path):
    calc, symbols = fitted[case]
    write_quip_xml(calc.model, tmp_path / "gap.xml", sparse_separate_file=separate)
    assert any(f.startswith("gap.xml.sparseX.") for f in os.listdir(tmp_path)) == separate
    back = ase_mlcalc.load(tmp_path / "gap.xml")
    assert_bit_identical(back.model, calc.model)
    for atoms in structures(symbols).values():
        a, b = results(back, atoms), results(calc, atoms)
        assert all(np.array_equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("name", list(FILES))
def test_export_of_imported_file(name, quippy_potential, tmp_path):
    """gap_fit file -> model -> XML: quippy on it equals quippy on the original; read back bit for bit; the
    gap_fit label, gap_version and command line are kept; the per-point numbers are the file's."""
    model = read_quip_xml(xml_path(name))
    write_quip_xml(model, tmp_path / "re.xml")
    back = read_quip_xml(tmp_path / "re.xml")
    assert_bit_identical(back, model)
    assert {k: back.metadata[k] for k in ("label", "gap_version", "command_line")} == \
        {k: model.metadata[k] for k in ("label", "gap_version", "command_line")}
    assert_agree(quippy_potential(tmp_path / "re.xml"), quippy_potential(xml_path(name)), FILES[name], tol=1e-12)
    if name == "cuau_2b_soap":  # same coordinates: every number as gap_fit wrote it
        def numbers(path):
            cs = ET.parse(path).getroot().findall(".//gpCoordinates")
            return [(c.get("label"), float(c.get("signal_variance")), [(float(x.get("alpha")),
                     float(x.get("sparseCutoff")), " ".join(x.itertext()).split()) for x in c.findall("sparseX")])
                    for c in cs]

        a, b = numbers(xml_path(name)), numbers(tmp_path / "re.xml")
        for (la, da, xa), (lb, db, xb) in zip(a, b, strict=True):
            assert (la, da) == (lb, db)
            assert [(p, q, [float(v) for v in r]) for p, q, r in xa] == [(p, q, [float(v) for v in r])
                                                                        for p, q, r in xb]


# ----------------------------------------------------------------------------- edited files: variants, refusals

def _edit(name, tmp_path, fn):
    src = read(xml_path(name))
    new = fn(src)
    assert new != src, "the edit did not apply"
    for f in os.listdir(DATA):
        if f.startswith(f"{name}.xml.sparseX"):
            shutil.copy(os.path.join(DATA, f), tmp_path)
    (tmp_path / f"{name}.xml").write_text(new)
    return tmp_path / f"{name}.xml"


def _desc(kind, add, count=1):
    """Append ``add`` to the first ``count`` descriptor strings of ``kind``."""
    return lambda t: re.sub(rf"<descriptor>({kind} [^<]*)</descriptor>", lambda m: f"<descriptor>{m[1]} {add}"
                            "</descriptor>", t, count=count)


def _first(old, new):
    return lambda t: t.replace(old, new, 1)


VARIANTS = {  # what gap_fit's files here do not use, by editing them: ours and quippy must still agree
    "pair Z1 > Z2": ("cuau_2b_soap", _first("Z1=29 Z2=79", "Z1=79 Z2=29"),
                     lambda m: m.terms[0].sparse_species.tolist()[8:16] == [1] * 8),
    "pair of any elements (Z1=Z2=0)": ("cuau_2b_soap", _first("Z1=29 Z2=29", "Z1=0 Z2=0"),
                                       lambda m: m.terms[0].sparse_species.tolist()[:24] == [0] * 8 + [1] * 8 + [2] * 8),
    "pair with any element (Z1=0)": ("cuau_2b_soap", _first("Z1=79 Z2=79", "Z2=79"),
                                     lambda m: m.terms[0].sparse_species.tolist()[16:] == [1] * 8 + [2] * 8),
    "per-point sparseCutoff kept": ("cuau_2b_soap", _first('sparseCutoff=".30873060056944185"', 'sparseCutoff="0.25"'),
                                    lambda m: m.terms[0].sparse_cutoff[0] == 0.25),
    "soap sparseCutoff != 1": ("cuau_2b_soap", _first('sparseCutoff="1.0000000000000000" sliced="T"',
                                                      'sparseCutoff="0.5" sliced="T"'), lambda m: True),
    "pair f0 (signal_mean)": ("cuau_2b_soap", _first('signal_mean=".00000000000000000E+000"', 'signal_mean="-0.05"'),
                              lambda m: [t.kind for t in m.terms] == ["distance_2b"] * 2 + ["soap"]
                              and m.terms[0].f0 == 0.05),
    "gap_version < 1426512068 (central_reference_all_species forced)": (
        "cuau_2b_soap", _first('gap_version="1769700636"', 'gap_version="1425000000"'),
        lambda m: m.terms[1].descriptor.central_reference_all_species and m.metadata["gap_version"] == 1425000000),
    "soap without species_Z (one element)": ("mo_soap", _first(" n_species=1 Z=42 species_Z={42 }", ""),
                                             lambda m: m.species == (42,)),
    "zeta as <theta> (old files)": ("mo_soap", lambda t: t.replace(' zeta="4.0000000000000000"', "").replace(
        "<descriptor>", "<theta> 4.0 </theta>\n      <descriptor>"), lambda m: m.terms[0].zeta == 4),
    "E_scale=1": ("mo_soap", lambda t: t.replace('init_args="IP GAP ', 'init_args="IP GAP E_scale=1.0 '),
                  lambda m: True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_equal_quippy(variant, quippy_potential, tmp_path):
    name, edit, check = VARIANTS[variant]
    path = _edit(name, tmp_path, edit)
    calc = ase_mlcalc.load(path)
    assert check(calc.model)
    assert_agree(calc, quippy_potential(path), FILES[name])


REFUSED = {  # feature: (file, edit, the words the message must hold)
    "angle_3b": ("cuau_2b_soap", _first("<descriptor>distance_2b", "<descriptor>angle_3b"), "angle_3b"),
    "soap_turbo": ("mo_soap", _first("<descriptor>soap ", "<descriptor>soap_turbo "), "soap_turbo"),
    "covariance pp": ("cuau_2b_soap", _first('covariance_type="1"', 'covariance_type="4"'), "pp"),
    "covariance bond_real_space": ("mo_soap", _first('covariance_type="2"', 'covariance_type="3"'),
                                   "bond_real_space"),
    "core potential (Sum)": ("mo_soap", lambda t: re.sub(r'init_args="IP GAP (label=[^"]*)"',
                                                         r'init_args="Sum init_args_pot1={IP LJ} '
                                                         r'init_args_pot2={IP GAP \1}"', t), "Sum"),
    "E_scale": ("mo_soap", lambda t: re.sub(r'init_args="IP GAP ', 'init_args="IP GAP E_scale=2.0 ', t), "E_scale"),
    "do_core": ("mo_soap", _first('do_core="F"', 'do_core="T"'), "do_core"),
    "do_pca": ("mo_soap", _first('do_core="F"', 'do_core="F" do_pca="T"'), "do_pca"),
    "unfitted": ("mo_soap", _first('fitted="T"', 'fitted="F"'), "fitted=F"),
    "full GP": ("mo_soap", _first('sparsified="T"', 'sparsified="F"'), "sparsified=F"),
    "permutations": ("mo_soap", _first('n_permutations="1"', 'n_permutations="2"'), "n_permutations"),
    "old gap_version": ("mo_soap", lambda t: re.sub(r' gap_version="\d+"', "", t), "gap_version"),
    "zeta < 1": ("mo_soap", _first('zeta="4.0000000000000000"', 'zeta="0.5"'), "zeta"),
    "species_Z orders differ": ("cuau_2b_soap", _first("species_Z={29 79 }", "species_Z={79 29 }"), "species_Z"),
    "2b element outside species_Z": ("cuau_2b_soap", _first("Z1=29 Z2=29", "Z1=13 Z2=29"), "Al"),
    "trailing entry != covariance_sigma0": ("cuau_soap_options", _first("covariance_sigma0=0.2",
                                                                       "covariance_sigma0=0.3"), "covariance_sigma0"),
    "unknown option": ("mo_soap", _desc("soap", "frobnicate=3"), "frobnicate"),
    "2b n_exponents": ("cuau_2b_soap", _desc("distance_2b", "n_exponents=2 exponents={1 -1}"), "n_exponents"),
    "2b tail_exponent": ("cuau_2b_soap", _desc("distance_2b", "tail_exponent=1"), "tail_exponent"),
    "2b only_intra": ("cuau_2b_soap", _desc("distance_2b", "only_intra=T"), "only_intra"),
    "2b only_inter": ("cuau_2b_soap", _desc("distance_2b", "only_inter=T"), "only_inter"),
    "2b resid_name": ("cuau_2b_soap", _desc("distance_2b", "resid_name=mol"), "resid_name"),
    **{f"soap {opt}": ("mo_soap", _desc("soap", opt), opt.split("=")[0]) for opt in (
        "normalise=F", "average=T", "n_Z=2", "diagonal_radial=T", "nu_R=1", "nu_S=1", "Z_mix=T", "R_mix=T",
        "sym_mix=T", "coupling=F", "K=1", "Z_map={1 2}", "radial_basis=GTO", "cutoff_dexp=2",
        "basis_error_exponent=8")},
}


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("feature", list(REFUSED))
def test_unsupported_feature_is_refused_by_name(feature, tmp_path):
    name, edit, words = REFUSED[feature]
    path = _edit(name, tmp_path, edit)
    with pytest.raises(UnsupportedQuipFeature, match=re.escape(words)) as err:
        ase_mlcalc.load(path)
    assert isinstance(err.value, ModelFileError)


@pytest.mark.parametrize("name, words", [("refused_soap_turbo", "soap_turbo"), ("refused_lj_core", "Sum")])
def test_gap_fit_files_we_do_not_implement_are_refused(name, words):
    """Real gap_fit files: a soap_turbo GAP, and a GAP on an LJ core potential (init_args Sum ...)."""
    with pytest.raises(UnsupportedQuipFeature, match=re.escape(words)):
        ase_mlcalc.load(xml_path(name))


def test_gap_fit_keys_in_descriptor_strings_are_accepted(tmp_path):
    """gap_fit leaves its own keys in the descriptor strings (QUIP's descriptors ignore them): not refused."""
    path = _edit("mo_soap", tmp_path, _desc("soap", "add_species=F theta_uniform=1.0 unique_descriptor_tolerance=0"))
    assert read_quip_xml(path).species == (42,)


def test_corrupt_sparse_point_file(tmp_path):
    path = _edit("mo_soap", tmp_path, lambda t: t + "\n")  # a copy, with its sparse-point file
    (sx,) = [f for f in os.listdir(tmp_path) if ".sparseX." in f]
    data = (tmp_path / sx).read_text()
    (tmp_path / sx).write_text(data.replace("e-01\n", "e-02\n", 1))
    with pytest.raises(ModelFileError, match="md5"):
        ase_mlcalc.load(path)
    os.remove(tmp_path / sx)
    with pytest.raises(ModelFileError, match="missing"):
        ase_mlcalc.load(path)
    (tmp_path / "bad.xml").write_text("<GAP_x><unclosed></GAP_x>")
    with pytest.raises(ModelFileError, match="not a readable"):
        ase_mlcalc.load(tmp_path / "bad.xml")


def test_export_refuses_what_quip_cannot_express(tmp_path):
    lj = LennardJones(epsilon=0.0104, sigma=3.4, rc=8.5)
    with pytest.raises(UnsupportedQuipFeature, match="lennard_jones"):
        lj.save(tmp_path / "lj.xml")
    model = read_quip_xml(xml_path("mo_soap"))
    model.terms[0].kind = "angle_3b"  # a term kind quippy has no counterpart of (as far as the writer can tell)
    with pytest.raises(UnsupportedQuipFeature, match="angle_3b"):
        write_quip_xml(model, tmp_path / "x.xml")
    assert not os.listdir(tmp_path)  # nothing half-written
