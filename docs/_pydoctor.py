"""
The pydoctor system NetStructer's API reference is built with.

It is pydoctor's own, plus one check: every public name of the package
(one with no component starting with an underscore) must have a
docstring, its own, an inherited one, or an C{@ivar}/C{@cvar} field of its
class.  Each one without is reported like any other pydoctor warning, so
the documentation build (run with C{-W}) fails on it.
"""

from __future__ import annotations

from pydoctor import epydoc2stan, model


def isPublic(documentable: model.Documentable) -> bool:
    """
    Whether a name is part of the public API.

    @param documentable: A module, class, function or attribute.
    @return: Whether no component of its full name, after the package's,
        starts with an underscore.
    """
    _, *rest = documentable.fullName().split(".")
    return not any(part.startswith("_") for part in rest)


class NetStructerSystem(model.System):
    """
    A pydoctor system that also reports undocumented public names.
    """

    def postProcess(self) -> None:
        """
        Process as pydoctor does, then report each public name that has no
        documentation.
        """
        super().postProcess()
        for documentable in list(self.allobjects.values()):
            if not isPublic(documentable):
                continue
            if epydoc2stan.ensure_parsed_docstring(documentable) is None:
                documentable.report(
                    f"{documentable.fullName()} is public and has no documentation",
                    section="docstring",
                )
