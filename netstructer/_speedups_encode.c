/* The encoder of netstructer._speedups: see _speedups.h. */

#include "_speedups.h"

PyObject *
ns_encode(PyObject *value, Py_ssize_t maxIntBytes)
{
    (void)value;
    (void)maxIntBytes;
    Py_RETURN_NONE;
}
