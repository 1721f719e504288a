"""
Build script: everything but the optional C accelerator is declared in
setup.cfg.

C{netstructer._speedups} is a C implementation of the value codec's hot
paths (L{netstructer.values} keeps the reference implementation, and uses
it wherever the accelerator is missing or declines a value).  It is
optional: where it cannot be compiled (no C compiler or Python headers) the
install goes on without it, and NetStructer runs in pure Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "netstructer._speedups",
            sources=[
                "netstructer/_speedups.c",
                "netstructer/_speedups_decode.c",
                "netstructer/_speedups_encode.c",
            ],
            depends=["netstructer/_speedups.h"],
            optional=True,
        )
    ]
)
