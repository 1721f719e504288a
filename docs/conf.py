"""
Sphinx configuration of NetStructer's documentation site.

The narrative pages are reStructuredText in this directory; the API
reference is generated from the docstrings by pydoctor (through its Sphinx
extension) into C{api/} of the output directory, and its inventory lets the
pages link to it with the usual C{:py:...:} roles.  Build the whole site
with::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Links to Python's and Twisted's own API documentation come from their
inventories (C{objects.inv}).  This machine may have no network, so local
copies are used when present: Debian's C{python3-doc} and C{twisted-doc}
packages install them (see L{_localInventory}); elsewhere they are
downloaded from the projects' sites.
"""

from __future__ import annotations

import configparser
import glob
import sys
from pathlib import Path

_DOCS = Path(__file__).resolve().parent
_ROOT = _DOCS.parent
# pydoctor imports its system class (docs/_pydoctor.py) by name.
sys.path.insert(0, str(_DOCS))

_setup = configparser.ConfigParser()
_setup.read(_ROOT / "setup.cfg", encoding="utf-8")

project = "NetStructer"
author = "The NetStructer developers"
copyright = "The NetStructer developers"
release = _setup["metadata"]["version"]
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.intersphinx",
    "pydoctor.sphinx_ext.build_apidocs",
]

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# Every cross-reference must resolve: a broken one is a warning, and the
# build treats warnings as errors (-W).
nitpicky = True
highlight_language = "none"

html_theme = "furo"
html_title = f"NetStructer {release}"
html_static_path: list[str] = []


def _localInventory(pattern: str) -> str | None:
    """
    Find a local copy of a project's Sphinx inventory.

    @param pattern: A glob pattern for its path.
    @return: The newest match (by name), or L{None} if none exists.
    """
    found = sorted(glob.glob(pattern))
    return found[-1] if found else None


_PYTHON_URL = "https://docs.python.org/3/"
_TWISTED_URL = "https://docs.twisted.org/en/stable/api/"
_PYTHON_INVENTORY = _localInventory(
    f"/usr/share/doc/python3.{sys.version_info.minor}/html/objects.inv"
) or _localInventory("/usr/share/doc/python3.*/html/objects.inv")
_TWISTED_INVENTORY = _localInventory("/usr/share/doc/twisted-doc/html/api/objects.inv")

intersphinx_mapping = {
    "python": (_PYTHON_URL, _PYTHON_INVENTORY),
    "twisted": (_TWISTED_URL, _TWISTED_INVENTORY),
}


def _pydoctorInventory(url: str, local: str | None) -> str:
    """
    The pydoctor argument that links to another project's API.

    @param url: Where that project's documentation is published.
    @param local: A local copy of its inventory, or L{None} to download it.
    """
    if local is None:
        return f"--intersphinx={url}objects.inv"
    return f"--intersphinx-file={local}::{url}"


# The API reference: pydoctor writes it to api/ in the output directory, and
# anything it prints (a broken link, a docstring that does not parse)
# becomes a Sphinx warning, so -W fails the build on it too.
pydoctor_args = [
    "--project-name=NetStructer",
    f"--project-version={release}",
    "--project-url=../index.html",
    "--docformat=epytext",
    "--system-class=_pydoctor.NetStructerSystem",
    f"--project-base-dir={_ROOT}",
    _pydoctorInventory(_PYTHON_URL, _PYTHON_INVENTORY),
    _pydoctorInventory(_TWISTED_URL, _TWISTED_INVENTORY),
    "--html-output={outdir}/api",
    str(_ROOT / "netstructer"),
]
pydoctor_url_path = "api/"
