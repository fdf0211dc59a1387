"""Build the Cython kernels in cython_ext/ as mlptools._ext.<name> (metadata lives in pyproject.toml).

Environment:
  MLPTOOLS_OPENMP=0        build without OpenMP (kernels then run single-threaded)
  MLPTOOLS_CYTHON_DEBUG=1  bounds/wraparound/initialised checks on, -O0 -g
  MLPTOOLS_ONLY_EXT=a,b    build only these kernels (developer convenience)
"""

import os
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

here = Path(__file__).parent
debug = os.environ.get("MLPTOOLS_CYTHON_DEBUG", "0") == "1"
openmp = os.environ.get("MLPTOOLS_OPENMP", "1") != "0" and sys.platform != "darwin"
only = {s for s in os.environ.get("MLPTOOLS_ONLY_EXT", "").split(",") if s}

compile_args = ["-O0", "-g"] if debug else ["-O3"]
link_args = []
if openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

extensions = [
    Extension(
        f"mlptools._ext.{pyx.stem}",
        [str(pyx.relative_to(here))],
        include_dirs=[np.get_include(), "cython_ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for pyx in sorted((here / "cython_ext").glob("*.pyx"))
    if not only or pyx.stem in only
]

directives = dict(
    language_level=3,
    boundscheck=debug,
    wraparound=debug,
    cdivision=not debug,
    initializedcheck=debug,
    embedsignature=True,
)

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        compile_time_env={"MLPTOOLS_OPENMP": openmp},
        build_dir="build/cython",
    ),
)
