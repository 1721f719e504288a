/*
 * The C accelerator of netstructer.values: declarations shared by its
 * source files.  See _speedups.c.
 */
#ifndef NETSTRUCTER_SPEEDUPS_H
#define NETSTRUCTER_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Extension codes: the same as netstructer.values.EXT_*. */
#define NS_EXT_TUPLE 1
#define NS_EXT_SET 2
#define NS_EXT_FROZENSET 3
#define NS_EXT_BYTEARRAY 4
#define NS_EXT_COMPLEX 5
#define NS_EXT_BIGINT 6

/*
 * Encode a value exactly as netstructer.values' reference encoder does.
 *
 * Returns a new bytes object; or a new reference to Py_None when the value
 * needs the reference encoder (any type other than the supported exact
 * types, a memoryview, a str that is not valid Unicode, a big integer over
 * maxIntBytes, nesting deeper than NS_ENCODE_DEPTH, a length over 2**32-1),
 * which then encodes it or names the problem; or NULL with an exception set
 * (MemoryError only).
 */
PyObject *ns_encode(PyObject *value, Py_ssize_t maxIntBytes);

/*
 * decode(data, maxSize, maxDepth, maxItems, maxIntBytes, maxObjects,
 * maxHashCollisions): the value data encodes, exactly as netstructer.values'
 * reference decoder returns it for those Limits; a ValueError for every input
 * the reference decoder refuses (and MemoryError).  data is any buffer of
 * bytes (one that is not C-contiguous is read from a copy); anything else is
 * refused, and so left to the reference decoder.
 */
PyObject *ns_decode(PyObject *const *args, Py_ssize_t nargs);

/*
 * decodeMany(data, maxSize, maxDepth, maxItems, maxIntBytes, maxObjects,
 * maxHashCollisions, maxValues): the list of values of a batch, as
 * Decoder.decodeMany returns it; a ValueError where it refuses.
 */
PyObject *ns_decodeMany(PyObject *const *args, Py_ssize_t nargs);

/* The deepest nesting ns_encode encodes itself. */
#define NS_ENCODE_DEPTH 512

#endif
