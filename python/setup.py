"""Builds fathom._core with the project's CMake (pybind11 from Debian), then packages it.

    python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation ./python

FATHOM_BUILD_DIR reuses an existing CMake build directory (scripts/test.sh points it at build/,
so only the module's own target is built); otherwise the build goes to build-python/ at the top
of the repository and is kept for the next install.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        build_dir = Path(os.environ.get("FATHOM_BUILD_DIR") or ROOT / "build-python").resolve()
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DFATHOM_BUILD_PYTHON=ON"]
        if not (build_dir / "CMakeCache.txt").exists():
            configure += ["-DCMAKE_BUILD_TYPE=Release", "-DFATHOM_BUILD_TESTS=OFF",
                          f"-DPython3_EXECUTABLE={sys.executable}"]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "fathom_python_core",
                        "-j", str(os.cpu_count() or 1)], check=True)
        built = sorted((build_dir / "python" / "fathom").glob("_core*.so"))
        if not built:
            raise RuntimeError(f"the CMake build did not produce fathom/_core*.so in {build_dir}")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(ext_modules=[Extension("fathom._core", sources=[])], cmdclass={"build_ext": CMakeBuild})
