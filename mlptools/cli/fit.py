"""``mlptools fit``: fit a GAP, linear, quadratic or neural-network potential (or a committee)."""

import signal

import click

from mlptools.cli import _common as c


@click.command(short_help="Fit a GAP, linear or NN potential to labels.")
@c.inputs(name="train")
@click.option("--valid", "valid", multiple=True, type=click.Path(allow_dash=True, dir_okay=False),
              help="Validation structures (repeatable); their errors are printed too.")
@click.option("--model", "kind", type=click.Choice(["gap", "linear", "quadratic", "nn"]),
              default="gap", show_default=True,
              help="GAP (sparse GP on SOAP, ζ=4), linear / quadratic ridge on the SOAP power "
                   "spectrum (SNAP/qSNAP-like), or nn: Behler–Parrinello networks on ACSF "
                   "(or --soap).")
@click.option("--committee", type=click.IntRange(min=2), default=None, metavar="K",
              help="Fit K models on bootstrap resamples (different seeds) and predict their "
                   "mean; the spread is the uncertainty (eV, eV/Å) that md --max-uncertainty "
                   "and build-db --explore use.")
@click.option("--acsf", "acsf_spec", metavar="PRESET|FILE|HYPERS", default=None,
              help="ACSF of --model nn: a preset (fine, default, compact), a JSON file, or "
                   "\"cutoff=6 g2=0.05,0;0.3,0 g4=0.005,1,1\" (Å, 1/Å²) [default: fine].")
@click.option("--soap", "soap_spec", metavar="HYPERS", default=None,
              help="SOAP hypers, e.g. \"cutoff=5 n_max=8 l_max=6 sigma=0.5\" (Å) [default: "
                   "cutoff 5, width 1, n_max 8, l_max 6, sigma 0.5; for gap cutoff 5.5, "
                   "normalised and radially scaled by 1/(1 + (r/3 Å)^4), scaling_r0=0 turns "
                   "that off]. With "
                   "--model nn the networks use SOAP instead of ACSF.")
@click.option("--descriptors", "descriptors_path", type=click.Path(dir_okay=False), default=None,
              help="Precomputed SOAP of TRAIN from 'mlptools describe --soap ... --gradients' "
                   "(same frames in the same order); its hypers replace --soap.")
@click.option("--hypers", "hypers_spec", metavar="HYPERS", default="",
              help="Other model hypers as key=value: gap: zeta (4), delta (0.3 eV), sparse_method "
                   "(cur|fps), jitter; linear/quadratic: ridge, n_components; nn: hidden "
                   "(\"25,25\"), activation (tanh|softplus), l2, optimizer (lbfgs|adam), "
                   "max_iter, valid_fraction, patience, learning_rate, batch_size; all: "
                   "config_type_sigma (\"Surface=σE,σF,σV ...\"), batch_atoms.")
@click.option("--twobody", "twobody_spec", is_flag=False, flag_value="", default=None,
              metavar="HYPERS|none", help="GAP's 2-body term (squared exponential on distances), "
                                          "on by default: \"cutoff=5 delta=1 theta=0.5 "
                                          "n_sparse=30\" (Å, eV), or none.")
@click.option("--threebody", "threebody_spec", is_flag=False, flag_value="", default=None,
              metavar="HYPERS|none", help="GAP's 3-body term (squared exponential on angle_3b "
                                          "triplets), on by default: \"cutoff=3.7 delta=0.1 "
                                          "theta=1 n_sparse=200 max_total_sparse=1200\" (Å, "
                                          "eV; n_sparse per species triple, all triples "
                                          "together at most max_total_sparse), or none.")
@click.option("--n-sparse", type=click.IntRange(1), default=None,
              help="GAP sparse points over all species [default: 2000].")
@click.option("--sigma-energy", type=click.FloatRange(0), default=None,
              help="Energy regularisation σ_E in eV/atom (×√n per structure) [default: 0.002].")
@click.option("--sigma-force", type=click.FloatRange(0), default=None,
              help="Force σ_F in eV/Å; 0 fits no forces [default: 0.05].")
@click.option("--sigma-virial", type=click.FloatRange(0), default=None,
              help="Virial σ_V in eV/atom (×√n); 0 fits no stress [default: 0.05].")
@click.option("--e0", "e0", metavar="EL=eV,...", default=None,
              help="Per-species reference energies in eV, e.g. Si=-0.16 [default: from "
                   "isolated-atom frames, else fitted to the energies].")
@click.option("--baseline", metavar="zbl|table FILE|none", default=None,
              help="Repulsive pair baseline: zbl (switched off between 0.5 and 0.75 × the sum of "
                   "covalent radii, and at least 0.2 Å below the shortest training distance; "
                   "\"zbl inner=0.5 outer=0.75 margin=0.2\"), \"table FILE\" (a LAMMPS "
                   "pair_style table file, Å and eV, one section per pair named like Si-Si; "
                   "\"table FILE keyword=KEY\" uses one section for every pair; stored in the "
                   "model) or none [default: zbl].")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="--model nn: save the training state here every 25 iterations and on "
                   "SIGTERM (exit 143); rerunning the same command resumes from it.")
@click.option("--max-memory", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="GB", help="Refuse to start when the fit would need more memory (GB).")
@click.option("--format", "fmt", type=click.Choice(["text", "tsv", "json"]), default="text",
              show_default=True, help="Format of the error tables on stdout.")
@c.seed_option(required=False)
@c.min_distance_option()
@c.output(hdf5=True, help="Model file (HDF5, written atomically).")
@c.verbosity_options
def fit(train, valid, kind, committee, acsf_spec, soap_spec, descriptors_path, hypers_spec,
        twobody_spec, threebody_spec, n_sparse, sigma_energy, sigma_force, sigma_virial, e0,
        baseline, checkpoint, max_memory, fmt, seed, min_distance, output):
    """Fit a potential to energies (eV), forces (eV/Å) and stresses.

    Reads labelled structures (extxyz, '-' = stdin, an mlptools structure database, or any
    format ASE reads), fits the model and writes one self-contained HDF5 model file that
    `mlptools.load(path)` turns into an ASE calculator. Prints RMSE and MAE of energy
    (meV/atom), forces (eV/Å) and stress (GPa) per config type for the training set and each
    --valid set on stdout. --seed (default 0) fixes the GAP sparse-point choice, the initial
    network weights and validation split of nn, and the committee resamples.

    \b
    Examples:
      mlptools fit train.xyz --valid test.xyz -o si-gap.h5
      mlptools fit train.xyz --model linear --soap "n_max=6 l_max=4" -o si-lin.h5
      mlptools fit train.xyz --model nn --hypers "hidden=25,25 max_iter=2000" -o si-nn.h5
      mlptools fit train.xyz --model nn --committee 5 --valid test.xyz -o si-nn5.h5
      mlptools build-db recipe.toml -o - | mlptools fit - --n-sparse 500 -o model.h5
      mpirun -n 4 mlptools fit train.xyz --valid test.xyz -o si-gap.h5

    Under mpirun a GAP's design rows (SOAP gradients, kernel columns) are built batch by batch
    on all ranks and their QR factors merged on rank 0, which writes the model (the same as a
    serial fit); other model kinds run the whole fit on every rank. Inputs must be named files.
    """
    from mlptools.errors import ComputationError, InputError, ParameterError, Terminated
    from mlptools.io.extxyz import display_name
    from mlptools.io.structures import iter_frames
    from mlptools.models.base import save_model
    from mlptools.models.training import memory_estimate_gb
    from mlptools.workflows import fit as wf

    cls = wf.hypers_class(kind)
    data = dict(cls.from_string(hypers_spec).to_dict()) if hypers_spec else {}
    data.pop("type", None)
    for key, value in (("n_sparse", n_sparse), ("sigma_energy", sigma_energy),
                       ("sigma_force", sigma_force), ("sigma_virial", sigma_virial),
                       ("e0", e0), ("baseline", baseline)):
        if value is not None:
            if key == "n_sparse" and kind != "gap":
                raise ParameterError("--n-sparse applies to --model gap only")
            data[key] = value
    if twobody_spec is not None:
        if kind != "gap":
            raise ParameterError("--twobody applies to --model gap only")
        data["twobody"] = twobody_spec.strip() or {}
    if threebody_spec is not None:
        if kind != "gap":
            raise ParameterError("--threebody applies to --model gap only")
        data["threebody"] = threebody_spec.strip() or {}
    descriptors = None
    if descriptors_path is not None:
        from mlptools.io.descriptors import read_descriptors

        descriptors = read_descriptors(descriptors_path, kinds=("soap",))["soap"]
        data["soap"] = dict(descriptors.hypers)
    elif soap_spec is not None:
        from mlptools.models.gap import soap_from_spec

        data["soap"] = soap_from_spec(soap_spec, cls().soap)
        if kind == "nn":
            data["descriptor"] = "soap"
    if acsf_spec is not None:
        if kind != "nn":
            raise ParameterError("--acsf applies to --model nn only")
        data["acsf"] = acsf_spec
        data["descriptor"] = "acsf"
    hypers = cls.from_dict(data)
    if e0 is not None:
        from mlptools.models.base import parse_e0

        parse_e0(e0)

    def read(sources):
        frames = []
        for source in sources:
            got = list(iter_frames([source], min_distance=min_distance))
            if hypers.sigma_force > 0:
                for k, atoms in enumerate(got):
                    res = atoms.calc.results if atoms.calc is not None else {}
                    if len(atoms) > 1 and res.get("forces") is None:
                        raise InputError(f"{display_name(source)}: frame {k}: no forces, but "
                                         "--sigma-force is set (give forces, or --sigma-force 0)")
            frames.extend(got)
        return frames

    comm = c.mpi_comm()
    if comm is not None and (not train or "-" in train or "-" in valid):
        raise click.UsageError("under mpirun every rank reads the inputs: name TRAIN and --valid "
                               "files (no '-')")
    if comm is not None:
        from mlptools.workflows._parallel import ase_serial

        with ase_serial():  # ASE's readers are collective under mpi4py; each rank reads alone
            train_frames = read(list(train))
            valid_frames = read(valid) if valid else None
    else:
        train_frames = read(list(train) or ["-"])
        valid_frames = read(valid) if valid else None
    valid_name = ", ".join(display_name(v) for v in valid) if valid else "valid"

    if max_memory is not None and kind != "nn":
        n_cols = hypers.n_sparse if kind == "gap" else _linear_cols(hypers, kind, train_frames)
        need = memory_estimate_gb(n_cols, hypers.batch_atoms, _n_features(hypers, train_frames))
        if need > max_memory:
            raise ComputationError(f"the fit needs about {need:.1f} GB, above --max-memory "
                                   f"{max_memory:g} GB; lower --n-sparse or hyper batch_atoms")

    def on_term(signum, frame):
        if checkpoint is not None:
            raise Terminated(f"stopped by SIGTERM; no model written; {checkpoint} holds the "
                             "training state: rerun the same command to resume")
        raise Terminated("stopped by SIGTERM; no model written")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            result = wf.fit_model(kind, train_frames, hypers, rng=c.make_rng(seed or 0),
                                  valid=valid_frames, valid_name=valid_name,
                                  descriptors=descriptors, committee=committee or 0,
                                  checkpoint=checkpoint, comm=comm)
        except InputError as exc:
            if descriptors is None or not str(exc).startswith("descriptors:"):
                raise
            raise InputError(f"{descriptors_path}{str(exc)[len('descriptors'):]}") from None
        if comm is None or comm.Get_rank() == 0:
            save_model(output, result.model,
                       provenance=c.provenance(list(train) + list(valid)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if comm is not None and comm.Get_rank() != 0:
        return  # rank 0 prints the tables

    with c.open_text_output("-") as out:
        reports = [("train", result.train_errors)]
        if result.valid_errors is not None:
            reports.append((valid_name, result.valid_errors))
        if fmt == "json":
            import json

            out.write(json.dumps({name: r.to_dict() for name, r in reports},
                                 ensure_ascii=False) + "\n")
        elif fmt == "tsv":
            for k, (name, r) in enumerate(reports):
                lines = r.to_tsv(header=k == 0).splitlines()
                if k == 0:
                    out.write("set\t" + lines.pop(0) + "\n")
                out.write("".join(f"{name}\t{line}\n" for line in lines))
        else:
            label = f"{kind} committee of {committee}" if committee else kind
            out.write("\n".join(r.to_text(title=f"{name} ({label}, fitted in "
                                                f"{result.fit_seconds:.1f} s)" if k == 0 else name)
                                for k, (name, r) in enumerate(reports)))


def _n_features(hypers, frames):
    from mlptools.descriptors.soap import _blocks

    species = {int(z) for a in frames for z in a.numbers}
    return _blocks(len(species), hypers.soap.n_max, hypers.soap.l_max)[1]


def _linear_cols(hypers, kind, frames):
    n_f = _n_features(hypers, frames)
    species = {int(z) for a in frames for z in a.numbers}
    d = hypers.n_components if kind == "quadratic" else 0
    return len(species) * (1 + n_f + d * (d + 1) // 2)
