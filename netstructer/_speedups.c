/*
 * netstructer._speedups: the value codec's hot paths in C.
 *
 * netstructer.values holds the reference implementation of the codec, and
 * its documentation is the specification this module follows.  This module
 * only ever makes the codec faster, never different:
 *
 *   - encode() returns exactly the bytes the reference encoder returns, or
 *     None for a value it leaves to the reference encoder (which encodes it
 *     or explains, with its path, why it cannot);
 *   - decode() and decodeMany() accept exactly the inputs the reference
 *     decoder accepts and return equal values of the same types; they
 *     refuse every other input by raising ValueError, after which the
 *     reference decoder runs to produce the DecodeError that explains it.
 *
 * tests/test_speedups_encode.py and tests/test_speedups_decode.py check both
 * promises on generated, mutated and hand-built inputs, fuzz/fuzz_values.py
 * compares the two implementations, and .ci/sanitize runs those tests with
 * this module built under AddressSanitizer and UndefinedBehaviorSanitizer.
 */

#include "_speedups.h"

static PyObject *
speedups_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t maxIntBytes;

    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode(value, maxIntBytes)");
        return NULL;
    }
    maxIntBytes = PyLong_AsSsize_t(args[1]);
    if (maxIntBytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return ns_encode(args[0], maxIntBytes);
}

static PyObject *
speedups_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return ns_decode(args, nargs);
}

static PyObject *
speedups_decodeMany(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return ns_decodeMany(args, nargs);
}

static PyMethodDef speedups_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))speedups_encode, METH_FASTCALL,
     "encode(value, maxIntBytes) -> bytes | None\n\n"
     "The value's encoding, or None to leave it to the reference encoder."},
    {"decode", (PyCFunction)(void (*)(void))speedups_decode, METH_FASTCALL,
     "decode(data, maxSize, maxDepth, maxItems, maxIntBytes, maxObjects,\n"
     "       maxHashCollisions) -> object\n\n"
     "The value data encodes; ValueError if the reference decoder would refuse it."},
    {"decodeMany", (PyCFunction)(void (*)(void))speedups_decodeMany, METH_FASTCALL,
     "decodeMany(data, maxSize, maxDepth, maxItems, maxIntBytes, maxObjects,\n"
     "           maxHashCollisions, maxValues) -> list\n\n"
     "The values of a batch; ValueError if the reference decoder would refuse it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "netstructer._speedups",
    "The value codec's hot paths in C; see netstructer.values.",
    0,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
