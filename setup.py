"""Maps the top-level folders into the one `onnxsmith` import namespace.

pyproject.toml holds the metadata; this file only lists packages, because the folder layout
(`passes/` installs as `onnxsmith.passes`, ...) needs `package_dir` plus a walk of subpackages.
"""

from setuptools import find_packages, setup

ROOTS = {
    "onnxsmith": "onnxsmith",
    "onnxsmith.passes": "passes",
    "onnxsmith.runtime": "runtime",
    "onnxsmith.exporter": "exporter",
}

packages = []
for package, folder in ROOTS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
