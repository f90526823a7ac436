"""Build hook: the wheel ships the default model, so a plain ``pip install`` codes images.

Everything else is in pyproject.toml. ``build_py`` copies the manifest's default
model (and its base, if it is a variant) from the checkout's weights/ into the
package folder ``trellic/weights/``, with a manifest listing only those. The
rest of the zoo stays out of the wheel: ``TRELLIC_WEIGHTS`` points an installed
trellic at a weights folder that holds it (trellic/paths.py).
"""

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEIGHTS = Path(__file__).resolve().parent / "weights"


class BuildPyWithDefaultModel(build_py):
    def run(self):
        super().run()
        manifest = json.loads((WEIGHTS / "manifest.json").read_text())
        names = [manifest["default"]]
        base = manifest["models"][names[0]].get("variant_of")
        names += [base] if base else []
        target = Path(self.build_lib) / "trellic" / "weights"
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            file = manifest["models"][name]["file"]
            shutil.copyfile(WEIGHTS / file, target / file)
        shipped = {**manifest, "models": {name: manifest["models"][name] for name in names}}
        (target / "manifest.json").write_text(json.dumps(shipped, indent=2) + "\n")


setup(cmdclass={"build_py": BuildPyWithDefaultModel})
