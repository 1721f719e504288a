/*
 * The encoder of netstructer._speedups: see _speedups.h.
 *
 * One recursive walk writes the value's msgpack encoding into one buffer: a
 * buffer on the C stack while the output is small, then a bytes object
 * grown geometrically, trimmed to size at the end.  Every step returns
 * NS_OK, NS_DECLINE (leave the value to the reference encoder) or NS_ERROR
 * (an exception is set).
 *
 * Only exact builtin types are encoded, so no Python code runs on purpose;
 * but iterating a set allocates an iterator (and a str that is not valid
 * Unicode an exception), which may start the cyclic garbage collector,
 * whose finalizers may run any code.  So each item of a list or dict is held
 * by a new reference while it is encoded (a tuple or frozenset holds its
 * own, a set iterator gives new ones), and a list, dict or set whose size
 * changes while it is walked makes the whole value declined (the reference
 * encoder then encodes what is there).
 */

#include "_speedups.h"

#include <stdint.h>
#include <string.h>

#define NS_OK 0
#define NS_DECLINE 1
#define NS_ERROR (-1)

/* Output that fits here never leaves the C stack until the final copy. */
#define NS_SMALL_BUFFER 256

/* The longest length any msgpack header can state. */
#define NS_MAX_LENGTH UINT64_C(0xffffffff)

typedef struct {
    unsigned char *start; /* the buffer */
    unsigned char *pos;   /* where the next byte goes */
    unsigned char *end;   /* one past the buffer's last byte */
    PyObject *bytes;      /* the bytes object that is the buffer, or NULL */
    Py_ssize_t maxIntBytes;
    unsigned char small[NS_SMALL_BUFFER];
} Writer;

static int encodeValue(Writer *w, PyObject *value, int depth);

/* Make room for at least `more` bytes after the used ones: the slow path. */
static int
growBuffer(Writer *w, Py_ssize_t more)
{
    Py_ssize_t used = w->pos - w->start;
    Py_ssize_t capacity = w->end - w->start;
    Py_ssize_t wanted;

    if (more > PY_SSIZE_T_MAX - used) {
        PyErr_NoMemory();
        return NS_ERROR;
    }
    wanted = capacity <= PY_SSIZE_T_MAX / 2 ? capacity * 2 : PY_SSIZE_T_MAX;
    if (wanted < used + more) {
        wanted = used + more;
    }
    if (w->bytes == NULL) {
        w->bytes = PyBytes_FromStringAndSize(NULL, wanted);
        if (w->bytes == NULL) {
            return NS_ERROR;
        }
        memcpy(PyBytes_AS_STRING(w->bytes), w->start, (size_t)used);
    }
    else if (_PyBytes_Resize(&w->bytes, wanted) < 0) {
        /* _PyBytes_Resize has released the old object. */
        return NS_ERROR;
    }
    w->start = (unsigned char *)PyBytes_AS_STRING(w->bytes);
    w->pos = w->start + used;
    w->end = w->start + wanted;
    return NS_OK;
}

/* Make room for at least `more` bytes after the used ones. */
static inline int
reserve(Writer *w, Py_ssize_t more)
{
    if (w->end - w->pos >= more) {
        return NS_OK;
    }
    return growBuffer(w, more);
}

/* Store a 16-bit number big-endian at p (room already reserved). */
static inline unsigned char *
put16(unsigned char *p, uint32_t n)
{
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    return p + 2;
}

/* Store a 32-bit number big-endian at p (room already reserved). */
static inline unsigned char *
put32(unsigned char *p, uint32_t n)
{
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return p + 4;
}

/* Store a 64-bit number big-endian at p (room already reserved). */
static inline unsigned char *
put64(unsigned char *p, uint64_t n)
{
    p = put32(p, (uint32_t)(n >> 32));
    return put32(p, (uint32_t)n);
}

/* Store a double as IEEE 754 binary64 big-endian at p, bit for bit. */
static inline unsigned char *
putDouble(unsigned char *p, double d)
{
    uint64_t bits;

    /* Doubles and integers share one byte order on every platform CPython
       supports, so the integer's value is the double's bit pattern. */
    memcpy(&bits, &d, sizeof(bits));
    return put64(p, bits);
}

/*
 * Write a header: `small` | length when the length is below `smallLimit`,
 * else the first of three header bytes (8-, 16-, 32-bit lengths; an 8-bit
 * form only when `first8` is nonzero) that holds it.  Declines a length
 * over 2**32-1.
 */
static inline int
writeHeader(Writer *w, Py_ssize_t length, unsigned char small, Py_ssize_t smallLimit,
            unsigned char first8, unsigned char first16, unsigned char first32)
{
    unsigned char *p;

    /* At most 5 bytes, and room for the code byte an extension adds. */
    if (reserve(w, 6) < 0) {
        return NS_ERROR;
    }
    p = w->pos;
    if (length < smallLimit) {
        *p++ = (unsigned char)(small | length);
    }
    else if (first8 && length <= 0xff) {
        *p++ = first8;
        *p++ = (unsigned char)length;
    }
    else if (length <= 0xffff) {
        *p++ = first16;
        p = put16(p, (uint32_t)length);
    }
    else if ((uint64_t)length <= NS_MAX_LENGTH) {
        *p++ = first32;
        p = put32(p, (uint32_t)length);
    }
    else {
        return NS_DECLINE;
    }
    w->pos = p;
    return NS_OK;
}

/* Write an array header for `count` items. */
static inline int
writeArrayHeader(Writer *w, Py_ssize_t count)
{
    return writeHeader(w, count, 0x90, 16, 0, 0xdc, 0xdd);
}

/* Write an extension's header: shortest form for `length`, then `code`. */
static int
writeExtHeader(Writer *w, Py_ssize_t length, unsigned char code)
{
    unsigned char fixed;
    int result;

    switch (length) {
    case 1: fixed = 0xd4; break;
    case 2: fixed = 0xd5; break;
    case 4: fixed = 0xd6; break;
    case 8: fixed = 0xd7; break;
    case 16: fixed = 0xd8; break;
    default: fixed = 0; break;
    }
    if (fixed) {
        if (reserve(w, 2) < 0) {
            return NS_ERROR;
        }
        *w->pos++ = fixed;
    }
    else {
        /* ext 8, 16 or 32; writeHeader reserves room for the code byte. */
        result = writeHeader(w, length, 0, 0, 0xc7, 0xc8, 0xc9);
        if (result != NS_OK) {
            return result;
        }
    }
    *w->pos++ = code;
    return NS_OK;
}

/* Append `length` bytes (room need not be reserved). */
static inline int
writeBytes(Writer *w, const char *data, Py_ssize_t length)
{
    if (reserve(w, length) < 0) {
        return NS_ERROR;
    }
    memcpy(w->pos, data, (size_t)length);
    w->pos += length;
    return NS_OK;
}

/* Write an int in [0, 2**64-1] in msgpack's smallest form. */
static inline int
writeUnsigned(Writer *w, uint64_t n)
{
    unsigned char *p;

    if (reserve(w, 9) < 0) {
        return NS_ERROR;
    }
    p = w->pos;
    if (n <= 0x7f) {
        *p++ = (unsigned char)n;
    }
    else if (n <= 0xff) {
        *p++ = 0xcc;
        *p++ = (unsigned char)n;
    }
    else if (n <= 0xffff) {
        *p++ = 0xcd;
        p = put16(p, (uint32_t)n);
    }
    else if (n <= UINT64_C(0xffffffff)) {
        *p++ = 0xce;
        p = put32(p, (uint32_t)n);
    }
    else {
        *p++ = 0xcf;
        p = put64(p, n);
    }
    w->pos = p;
    return NS_OK;
}

/* Write an int in [-2**63, 2**63-1] in msgpack's smallest form. */
static inline int
writeSigned(Writer *w, long long n)
{
    unsigned char *p;
    /* Two's complement bits of n: conversion to unsigned is modular. */
    uint64_t bits = (uint64_t)n;

    if (n >= 0) {
        return writeUnsigned(w, bits);
    }
    if (reserve(w, 9) < 0) {
        return NS_ERROR;
    }
    p = w->pos;
    if (n >= -32) {
        *p++ = (unsigned char)bits;
    }
    else if (n >= -128) {
        *p++ = 0xd0;
        *p++ = (unsigned char)bits;
    }
    else if (n >= -32768) {
        *p++ = 0xd1;
        p = put16(p, (uint32_t)(bits & 0xffff));
    }
    else if (n >= -2147483647LL - 1) {
        *p++ = 0xd2;
        p = put32(p, (uint32_t)bits);
    }
    else {
        *p++ = 0xd3;
        p = put64(p, bits);
    }
    w->pos = p;
    return NS_OK;
}

/* Call a method of an int with positional arguments (no bound method). */
static PyObject *
callIntMethod(const char *name, PyObject *const *args, size_t nargs)
{
    PyObject *nameObject = PyUnicode_FromString(name);
    PyObject *result;

    if (nameObject == NULL) {
        return NULL;
    }
    result = PyObject_VectorcallMethod(nameObject, args, nargs, NULL);
    Py_DECREF(nameObject);
    return result;
}

/*
 * Write an int outside 64 bits as ext EXT_BIGINT: its signed big-endian
 * two's complement in the fewest bytes.  For a negative n the bytes are
 * those of ~n (which is not negative) inverted.  Declines one longer than
 * maxIntBytes.
 */
static Py_NO_INLINE int
writeBigInt(Writer *w, PyObject *value, int negative)
{
    PyObject *magnitude;
    PyObject *args[3];
    PyObject *bits = NULL;
    PyObject *sizeObject = NULL;
    PyObject *order = NULL;
    PyObject *payload = NULL;
    Py_ssize_t bitCount, size, i;
    const unsigned char *data;
    int result = NS_ERROR;

    magnitude = negative ? PyNumber_Invert(value) : Py_NewRef(value);
    if (magnitude == NULL) {
        return NS_ERROR;
    }
    args[0] = magnitude;
    bits = callIntMethod("bit_length", args, 1);
    if (bits == NULL) {
        goto done;
    }
    bitCount = PyLong_AsSsize_t(bits);
    if (bitCount == -1 && PyErr_Occurred()) {
        goto done;
    }
    size = bitCount / 8 + 1;
    if (size > w->maxIntBytes || (uint64_t)size > NS_MAX_LENGTH) {
        result = NS_DECLINE;
        goto done;
    }
    sizeObject = PyLong_FromSsize_t(size);
    order = PyUnicode_FromString("big");
    if (sizeObject == NULL || order == NULL) {
        goto done;
    }
    args[1] = sizeObject;
    args[2] = order;
    payload = callIntMethod("to_bytes", args, 3);
    if (payload == NULL) {
        goto done;
    }
    if (!PyBytes_CheckExact(payload) || PyBytes_GET_SIZE(payload) != size) {
        result = NS_DECLINE;
        goto done;
    }
    result = writeExtHeader(w, size, NS_EXT_BIGINT);
    if (result != NS_OK) {
        goto done;
    }
    result = reserve(w, size);
    if (result != NS_OK) {
        goto done;
    }
    data = (const unsigned char *)PyBytes_AS_STRING(payload);
    if (negative) {
        for (i = 0; i < size; i++) {
            w->pos[i] = (unsigned char)~data[i];
        }
    }
    else {
        memcpy(w->pos, data, (size_t)size);
    }
    w->pos += size;
done:
    Py_DECREF(magnitude);
    Py_XDECREF(bits);
    Py_XDECREF(sizeObject);
    Py_XDECREF(order);
    Py_XDECREF(payload);
    return result;
}

/* Write an exact int: a msgpack int when it fits 64 bits, else a big int. */
static int
writeInt(Writer *w, PyObject *value)
{
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);

    if (overflow == 0) {
        if (n == -1 && PyErr_Occurred()) {
            return NS_ERROR;
        }
        return writeSigned(w, n);
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(value);

        if (u != (unsigned long long)-1 || !PyErr_Occurred()) {
            return writeUnsigned(w, (uint64_t)u);
        }
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NS_ERROR;
        }
        PyErr_Clear();
    }
    return writeBigInt(w, value, overflow < 0);
}

/* Write an exact str as msgpack str, UTF-8; decline one with surrogates. */
static int
writeStr(Writer *w, PyObject *value)
{
    const char *data;
    Py_ssize_t length;
    int result;

    if (PyUnicode_IS_COMPACT_ASCII(value)) {
        data = (const char *)PyUnicode_DATA(value);
        length = PyUnicode_GET_LENGTH(value);
    }
    else {
        data = PyUnicode_AsUTF8AndSize(value, &length);
        if (data == NULL) {
            if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
                return NS_ERROR;
            }
            PyErr_Clear();
            return NS_DECLINE;
        }
    }
    result = writeHeader(w, length, 0xa0, 32, 0xd9, 0xda, 0xdb);
    if (result != NS_OK) {
        return result;
    }
    return writeBytes(w, data, length);
}

/* Write an exact bytes object as msgpack bin. */
static int
writeBin(Writer *w, PyObject *value)
{
    Py_ssize_t length = PyBytes_GET_SIZE(value);
    int result;

    /* Reserve header and payload at once: a large value then takes one
       allocation of exactly its size. */
    if (reserve(w, length + 5) < 0) {
        return NS_ERROR;
    }
    result = writeHeader(w, length, 0, 0, 0xc4, 0xc5, 0xc6);
    if (result != NS_OK) {
        return result;
    }
    return writeBytes(w, PyBytes_AS_STRING(value), length);
}

/* Write an exact bytearray as ext EXT_BYTEARRAY. */
static int
writeBytearray(Writer *w, PyObject *value)
{
    Py_ssize_t length = PyByteArray_GET_SIZE(value);
    int result;

    if (reserve(w, length + 6) < 0) {
        return NS_ERROR;
    }
    result = writeExtHeader(w, length, NS_EXT_BYTEARRAY);
    if (result != NS_OK) {
        return result;
    }
    return writeBytes(w, PyByteArray_AS_STRING(value), length);
}

/* Write an exact float as msgpack float 64. */
static inline int
writeFloat(Writer *w, PyObject *value)
{
    if (reserve(w, 9) < 0) {
        return NS_ERROR;
    }
    *w->pos = 0xcb;
    w->pos = putDouble(w->pos + 1, PyFloat_AS_DOUBLE(value));
    return NS_OK;
}

/* Write an exact complex as ext EXT_COMPLEX (fixext 16). */
static int
writeComplex(Writer *w, PyObject *value)
{
    Py_complex c = PyComplex_AsCComplex(value);
    unsigned char *p;

    if (reserve(w, 18) < 0) {
        return NS_ERROR;
    }
    p = w->pos;
    *p++ = 0xd8;
    *p++ = NS_EXT_COMPLEX;
    p = putDouble(p, c.real);
    w->pos = putDouble(p, c.imag);
    return NS_OK;
}

/* Write a marker extension (empty payload) for a tuple, set or frozenset. */
static inline int
writeMarker(Writer *w, unsigned char code)
{
    if (reserve(w, 3) < 0) {
        return NS_ERROR;
    }
    w->pos[0] = 0xc7;
    w->pos[1] = 0x00;
    w->pos[2] = code;
    w->pos += 3;
    return NS_OK;
}

/* Write an exact list as an array of its items. */
static int
writeList(Writer *w, PyObject *list, int depth)
{
    Py_ssize_t count = PyList_GET_SIZE(list);
    Py_ssize_t i;
    int result = writeArrayHeader(w, count);

    for (i = 0; result == NS_OK && i < count; i++) {
        PyObject *item;

        /* A finalizer run by the garbage collector could have changed it. */
        if (PyList_GET_SIZE(list) != count) {
            return NS_DECLINE;
        }
        item = PyList_GET_ITEM(list, i);
        Py_INCREF(item);
        result = encodeValue(w, item, depth);
        Py_DECREF(item);
    }
    return result;
}

/* Write an exact tuple as an array: the EXT_TUPLE marker, then its items. */
static int
writeTuple(Writer *w, PyObject *tuple, int depth)
{
    Py_ssize_t count = PyTuple_GET_SIZE(tuple);
    Py_ssize_t i;
    int result = writeArrayHeader(w, count + 1);

    if (result == NS_OK) {
        result = writeMarker(w, NS_EXT_TUPLE);
    }
    for (i = 0; result == NS_OK && i < count; i++) {
        result = encodeValue(w, PyTuple_GET_ITEM(tuple, i), depth);
    }
    return result;
}

/* Write an exact set or frozenset as an array: the marker `code`, then its
   members in iteration order. */
static int
writeSet(Writer *w, PyObject *set, int depth, unsigned char code)
{
    Py_ssize_t count;
    Py_ssize_t seen = 0;
    PyObject *iterator;
    PyObject *member;
    int result;

    /* Made first: making it could run the garbage collector. */
    iterator = PyObject_GetIter(set);
    if (iterator == NULL) {
        return NS_ERROR;
    }
    count = PySet_GET_SIZE(set);
    result = writeArrayHeader(w, count + 1);
    if (result == NS_OK) {
        result = writeMarker(w, code);
    }
    while (result == NS_OK && (member = PyIter_Next(iterator)) != NULL) {
        if (++seen > count) {
            result = NS_DECLINE;
        }
        else {
            result = encodeValue(w, member, depth);
        }
        Py_DECREF(member);
    }
    if (result == NS_OK) {
        if (PyErr_Occurred()) {
            /* The set changed size: a RuntimeError, which ns_encode
               clears. */
            result = NS_ERROR;
        }
        else if (seen != count) {
            result = NS_DECLINE;
        }
    }
    Py_DECREF(iterator);
    return result;
}

/* Write an exact dict as a map: keys and values in iteration order. */
static int
writeDict(Writer *w, PyObject *dict, int depth)
{
    Py_ssize_t count = PyDict_GET_SIZE(dict);
    Py_ssize_t position = 0;
    Py_ssize_t seen = 0;
    PyObject *key;
    PyObject *item;
    int result = writeHeader(w, count, 0x80, 16, 0, 0xde, 0xdf);

    while (result == NS_OK && PyDict_Next(dict, &position, &key, &item)) {
        if (++seen > count) {
            return NS_DECLINE;
        }
        /* Encoding the key could let a finalizer drop the entry. */
        Py_INCREF(key);
        Py_INCREF(item);
        result = encodeValue(w, key, depth);
        if (result == NS_OK) {
            result = encodeValue(w, item, depth);
        }
        Py_DECREF(key);
        Py_DECREF(item);
        if (PyDict_GET_SIZE(dict) != count) {
            return NS_DECLINE;
        }
    }
    if (result == NS_OK && seen != count) {
        result = NS_DECLINE;
    }
    return result;
}

/* Write a container; decline one nested deeper than NS_ENCODE_DEPTH. */
static int
writeContainer(Writer *w, PyObject *value, PyTypeObject *type, int depth)
{
    if (depth >= NS_ENCODE_DEPTH) {
        return NS_DECLINE;
    }
    depth++;
    if (type == &PyList_Type) {
        return writeList(w, value, depth);
    }
    if (type == &PyDict_Type) {
        return writeDict(w, value, depth);
    }
    if (type == &PyTuple_Type) {
        return writeTuple(w, value, depth);
    }
    return writeSet(w, value, depth, type == &PySet_Type ? NS_EXT_SET : NS_EXT_FROZENSET);
}

/* Write any value inside `depth` containers; decline unsupported types. */
static int
encodeValue(Writer *w, PyObject *value, int depth)
{
    PyTypeObject *type = Py_TYPE(value);

    if (type == &PyUnicode_Type) {
        return writeStr(w, value);
    }
    if (type == &PyLong_Type) {
        return writeInt(w, value);
    }
    if (type == &PyList_Type || type == &PyDict_Type || type == &PyTuple_Type
        || type == &PySet_Type || type == &PyFrozenSet_Type) {
        return writeContainer(w, value, type, depth);
    }
    if (type == &PyBytes_Type) {
        return writeBin(w, value);
    }
    if (type == &PyFloat_Type) {
        return writeFloat(w, value);
    }
    if (value == Py_None || type == &PyBool_Type) {
        if (reserve(w, 1) < 0) {
            return NS_ERROR;
        }
        *w->pos++ = value == Py_None ? 0xc0 : value == Py_True ? 0xc3 : 0xc2;
        return NS_OK;
    }
    if (type == &PyByteArray_Type) {
        return writeBytearray(w, value);
    }
    if (type == &PyComplex_Type) {
        return writeComplex(w, value);
    }
    return NS_DECLINE;
}

/* See _speedups.h. */
PyObject *
ns_encode(PyObject *value, Py_ssize_t maxIntBytes)
{
    Writer w;
    Py_ssize_t used;
    int result;

    w.start = w.pos = w.small;
    w.end = w.small + NS_SMALL_BUFFER;
    w.bytes = NULL;
    w.maxIntBytes = maxIntBytes;
    result = encodeValue(&w, value, 0);
    if (result == NS_ERROR) {
        if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError)) {
            Py_XDECREF(w.bytes);
            return NULL;
        }
        /* Only a MemoryError is ours to raise: the reference encoder
           explains any other problem. */
        PyErr_Clear();
        result = NS_DECLINE;
    }
    if (result == NS_DECLINE) {
        Py_XDECREF(w.bytes);
        Py_RETURN_NONE;
    }
    used = w.pos - w.start;
    if (w.bytes == NULL) {
        return PyBytes_FromStringAndSize((const char *)w.small, used);
    }
    if (_PyBytes_Resize(&w.bytes, used) < 0) {
        return NULL;
    }
    return w.bytes;
}
