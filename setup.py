"""Builds the C kernel library into the tinyqt._ckernels extension.

The kernel sources in src/kernels/ are also copied into the package
(tinyqt/kernels_src) so that firmware code generation can vendor them.
"""
import glob
import os
import shutil

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_DIR = os.path.join("src", "kernels")
KERNEL_SOURCES = sorted(glob.glob(os.path.join(KERNEL_DIR, "*.c")))

# fp32 code must give the same bits on host and MCU: no contraction into FMA,
# no fast-math.
CFLAGS = ["-std=c99", "-O3", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra"]


class BuildPyWithKernels(build_py):
    """Ships the portable C sources inside the package for firmware builds."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "tinyqt", "kernels_src")
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        shutil.copytree(os.path.join(HERE, KERNEL_DIR), dest,
                        ignore=shutil.ignore_patterns("*.o", "__pycache__"))


extensions = [
    Extension(
        "tinyqt._ckernels",
        sources=[os.path.join("src", "tinyqt", "_ckernels.pyx")] + KERNEL_SOURCES,
        include_dirs=[os.path.join(KERNEL_DIR, "include"), KERNEL_DIR, numpy.get_include()],
        extra_compile_args=CFLAGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(extensions, language_level=3,
                          compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_py": BuildPyWithKernels},
)
