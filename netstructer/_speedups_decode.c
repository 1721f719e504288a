/*
 * The decoder of netstructer._speedups: see _speedups.h and the module
 * docstring of netstructer.values, which specifies what is accepted.
 *
 * The input comes from a peer, so every length is checked against the
 * bytes that remain before it is used, nothing is reserved for more items
 * than the remaining bytes could hold, the recursion is bounded by
 * maxDepth (at most 1024), and every refusal is a ValueError, raised before
 * anything is built for the refused part.  Only built-in types are ever
 * hashed or compared, so no Python code runs while decoding.
 */

#include "_speedups.h"

#include <stdint.h>
#include <string.h>

/* The state of one decode() or decodeMany() call. */
typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
    Py_ssize_t pos;
    Py_ssize_t maxDepth;
    Py_ssize_t maxItems;
    Py_ssize_t maxIntBytes;
    Py_ssize_t maxObjects;
    Py_ssize_t maxCollisions;
    /* The objects the value being decoded has made so far. */
    Py_ssize_t objects;
} Reader;

/* Refuse the input: set a ValueError saying why, and return NULL. */
static PyObject *
refuse(const char *why)
{
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* Refuse the input, for functions returning a status: return -1. */
static int
refuseStatus(const char *why)
{
    PyErr_SetString(PyExc_ValueError, why);
    return -1;
}

static uint16_t
load16(const unsigned char *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static uint32_t
load32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t
load64(const unsigned char *p)
{
    return ((uint64_t)load32(p) << 32) | load32(p + 4);
}

/* An IEEE 754 float64, big-endian, bit for bit. */
static double
loadDouble(const unsigned char *p)
{
    uint64_t bits = load64(p);
    double number;

    memcpy(&number, &bits, sizeof(number));
    return number;
}

/* Take n bytes from the input: a pointer to them, or NULL if fewer remain. */
static const unsigned char *
take(Reader *r, Py_ssize_t n)
{
    const unsigned char *p;

    if (n < 0 || n > r->size - r->pos) {
        return NULL;
    }
    p = r->data + r->pos;
    r->pos += n;
    return p;
}

/* Read an unsigned big-endian length of 1, 2 or 4 bytes; -1 if truncated. */
static Py_ssize_t
readLength(Reader *r, int width)
{
    const unsigned char *p = take(r, width);

    if (p == NULL) {
        return -1;
    }
    if (width == 1) {
        return p[0];
    }
    if (width == 2) {
        return load16(p);
    }
    /* Lengths over PY_SSIZE_T_MAX cannot fit in the input anyway. */
    return (Py_ssize_t)(load32(p) > (uint32_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : load32(p));
}

/*
 * Count a container's objects against maxObjects (one for the container,
 * one for each item, two for each dict entry), before building it.
 */
static int
countObjects(Reader *r, Py_ssize_t made)
{
    if (made > r->maxObjects - r->objects) {
        return refuseStatus("value makes more than maxObjects objects");
    }
    r->objects += made;
    return 0;
}

/* qsort's comparison of hash values. */
static int
compareHashes(const void *a, const void *b)
{
    Py_hash_t x = *(const Py_hash_t *)a;
    Py_hash_t y = *(const Py_hash_t *)b;

    return (x > y) - (x < y);
}

/*
 * Refuse keys (or members) that cannot be hashed, or of which more than
 * maxCollisions share one hash value, before a dict or set is built of them.
 * keys[0], keys[stride], ... are the n keys.
 */
static int
checkHashes(Reader *r, PyObject **keys, Py_ssize_t n, Py_ssize_t stride)
{
    Py_hash_t *hashes;
    Py_ssize_t i, run;

    if (n <= r->maxCollisions) {
        return 0;
    }
    hashes = PyMem_Malloc((size_t)n * sizeof(Py_hash_t));
    if (hashes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        hashes[i] = PyObject_Hash(keys[i * stride]);
        if (hashes[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(hashes);
            return refuseStatus("a key or member cannot be hashed");
        }
    }
    qsort(hashes, (size_t)n, sizeof(Py_hash_t), compareHashes);
    run = 1;
    for (i = 1; i < n; i++) {
        run = hashes[i] == hashes[i - 1] ? run + 1 : 1;
        if (run > r->maxCollisions) {
            PyMem_Free(hashes);
            return refuseStatus("too many keys or members share one hash value");
        }
    }
    PyMem_Free(hashes);
    return 0;
}

static PyObject *readValue(Reader *r, Py_ssize_t depth);

/*
 * If the input at the reader's position is a marker (an extension of code
 * 1, 2 or 3 with an empty payload), consume it and return its code; return
 * 0 if it is anything else, consuming nothing; -1 for a marker code with a
 * payload, which is refused.
 */
static int
readMarker(Reader *r)
{
    Py_ssize_t start = r->pos, length;
    const unsigned char *code;
    int width;

    if (r->pos >= r->size) {
        return 0;
    }
    switch (r->data[r->pos]) {
    case 0xc7: width = 1; break;
    case 0xc8: width = 2; break;
    case 0xc9: width = 4; break;
    default: return 0;
    }
    r->pos++;
    length = readLength(r, width);
    code = take(r, 1);
    if (length < 0 || code == NULL || code[0] < NS_EXT_TUPLE || code[0] > NS_EXT_FROZENSET) {
        r->pos = start;
        return 0;
    }
    if (length != 0) {
        return refuseStatus("a marker extension has a payload");
    }
    return code[0];
}

/*
 * Read count values, depth + 1 deep, into the item slots of a new tuple or
 * list.  On failure the slots not yet read stay NULL, which the tuple's or
 * list's deallocation skips.
 */
static int
readItems(Reader *r, PyObject **slots, Py_ssize_t count, Py_ssize_t depth)
{
    Py_ssize_t i;

    for (i = 0; i < count; i++) {
        slots[i] = readValue(r, depth + 1);
        if (slots[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

/* The items of an array of n items (its marker, if any, included). */
static PyObject *
readArray(Reader *r, Py_ssize_t n, Py_ssize_t depth)
{
    PyObject *items, *result;
    Py_ssize_t count;
    int marker;

    if (depth >= r->maxDepth) {
        return refuse("value nested deeper than maxDepth");
    }
    if (n > r->maxItems) {
        return refuse("an array holds more than maxItems items");
    }
    /* Every item takes at least one byte. */
    if (n > r->size - r->pos) {
        return refuse("an array claims more items than the input holds");
    }
    if (countObjects(r, n + 1) < 0) {
        return NULL;
    }
    marker = n > 0 ? readMarker(r) : 0;
    if (marker < 0) {
        return NULL;
    }
    count = marker ? n - 1 : n;
    items = marker == NS_EXT_TUPLE ? PyTuple_New(count) : PyList_New(count);
    if (items == NULL) {
        return NULL;
    }
    if (readItems(r, marker == NS_EXT_TUPLE ? ((PyTupleObject *)items)->ob_item
                                             : ((PyListObject *)items)->ob_item,
                  count, depth) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    if (marker == NS_EXT_TUPLE) {
        return items;
    }
    if (!marker) {
        return items;
    }
    /* A set or frozenset: no unhashable, colliding or repeated member. */
    if (checkHashes(r, ((PyListObject *)items)->ob_item, count, 1) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    result = marker == NS_EXT_SET ? PySet_New(items) : PyFrozenSet_New(items);
    Py_DECREF(items);
    if (result == NULL) {
        return NULL;
    }
    if (PySet_GET_SIZE(result) != count) {
        Py_DECREF(result);
        return refuse("a set holds the same member twice");
    }
    return result;
}

/* The dict of a map of n entries. */
static PyObject *
readMap(Reader *r, Py_ssize_t n, Py_ssize_t depth)
{
    PyObject *result, **pairs, *part;
    Py_ssize_t i, read;
    int status;

    if (depth >= r->maxDepth) {
        return refuse("value nested deeper than maxDepth");
    }
    if (n > r->maxItems) {
        return refuse("a map holds more than maxItems entries");
    }
    /* Every key and every value takes at least one byte. */
    if (n > (r->size - r->pos) / 2) {
        return refuse("a map claims more entries than the input holds");
    }
    if (countObjects(r, 2 * n + 1) < 0) {
        return NULL;
    }
    result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    if (n <= r->maxCollisions) {
        /* Too few keys to collide harmfully: insert them as they come. */
        for (i = 0; i < n; i++) {
            PyObject *key, *value;

            key = readValue(r, depth + 1);
            if (key == NULL) {
                Py_DECREF(result);
                return NULL;
            }
            value = readValue(r, depth + 1);
            if (value == NULL) {
                Py_DECREF(key);
                Py_DECREF(result);
                return NULL;
            }
            status = PyDict_SetItem(result, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (status < 0) {
                Py_DECREF(result);
                return NULL;
            }
        }
    }
    else {
        /* Read every entry first, and check the keys' hashes before any
           is inserted. */
        pairs = PyMem_Malloc((size_t)n * 2 * sizeof(PyObject *));
        if (pairs == NULL) {
            Py_DECREF(result);
            return PyErr_NoMemory();
        }
        status = 0;
        for (read = 0; read < 2 * n; read++) {
            part = readValue(r, depth + 1);
            if (part == NULL) {
                status = -1;
                break;
            }
            pairs[read] = part;
        }
        if (status == 0) {
            status = checkHashes(r, pairs, n, 2);
        }
        for (i = 0; status == 0 && i < n; i++) {
            status = PyDict_SetItem(result, pairs[2 * i], pairs[2 * i + 1]);
        }
        for (i = 0; i < read; i++) {
            Py_DECREF(pairs[i]);
        }
        PyMem_Free(pairs);
        if (status < 0) {
            Py_DECREF(result);
            return NULL;
        }
    }
    if (PyDict_GET_SIZE(result) != n) {
        Py_DECREF(result);
        return refuse("a map holds the same key twice");
    }
    return result;
}

/* int.from_bytes(p[:length], "big", signed=True), with public API only. */
static PyObject *
fromBytes(const unsigned char *p, Py_ssize_t length)
{
    PyObject *method, *args = NULL, *keywords = NULL, *number = NULL;

    method = PyObject_GetAttrString((PyObject *)&PyLong_Type, "from_bytes");
    if (method == NULL) {
        return NULL;
    }
    args = Py_BuildValue("(y#s)", (const char *)p, length, "big");
    keywords = Py_BuildValue("{sO}", "signed", Py_True);
    if (args != NULL && keywords != NULL) {
        number = PyObject_Call(method, args, keywords);
    }
    Py_XDECREF(keywords);
    Py_XDECREF(args);
    Py_DECREF(method);
    return number;
}

/* A big integer's payload: signed big-endian, in its one valid form. */
static PyObject *
readBigInt(Reader *r, const unsigned char *p, Py_ssize_t length)
{
    if (length > r->maxIntBytes) {
        return refuse("a big int is longer than maxIntBytes");
    }
    /* A redundant leading byte, or a value that fits 64 bits (which takes
       at most 8 bytes, or 9 for [2**63, 2**64-1]), is refused. */
    if (length < 9 || (length == 9 && p[0] == 0x00)) {
        return refuse("a big int fits 64 bits");
    }
    if ((p[0] == 0x00 && p[1] < 0x80) || (p[0] == 0xff && p[1] >= 0x80)) {
        return refuse("a big int has a redundant leading byte");
    }
    return fromBytes(p, length);
}

/* The value of an extension of the given payload length. */
static PyObject *
readExtension(Reader *r, Py_ssize_t length)
{
    const unsigned char *code, *p;

    code = take(r, 1);
    p = take(r, length);
    if (code == NULL || p == NULL) {
        return refuse("input ends in the middle of an extension");
    }
    switch (code[0]) {
    case NS_EXT_BYTEARRAY:
        return PyByteArray_FromStringAndSize((const char *)p, length);
    case NS_EXT_COMPLEX:
        if (length != 16) {
            return refuse("a complex extension is not 16 bytes");
        }
        return PyComplex_FromDoubles(loadDouble(p), loadDouble(p + 8));
    case NS_EXT_BIGINT:
        return readBigInt(r, p, length);
    default:
        /* Markers (anywhere but first in an array, where readArray takes
           them), msgpack's timestamp and every unknown code. */
        return refuse("an extension that is not valid here");
    }
}

/* A str of the given length. */
static PyObject *
readStr(Reader *r, Py_ssize_t length)
{
    const unsigned char *p = take(r, length);

    if (p == NULL) {
        return refuse("input ends in the middle of a str");
    }
    return PyUnicode_DecodeUTF8((const char *)p, length, "strict");
}

/* A bytes of the given length. */
static PyObject *
readBin(Reader *r, Py_ssize_t length)
{
    const unsigned char *p = take(r, length);

    if (p == NULL) {
        return refuse("input ends in the middle of a bin");
    }
    return PyBytes_FromStringAndSize((const char *)p, length);
}

/* The fixed-size payload of a number: NULL (refused) if truncated. */
static const unsigned char *
takeNumber(Reader *r, Py_ssize_t n)
{
    const unsigned char *p = take(r, n);

    if (p == NULL) {
        refuse("input ends in the middle of a number");
    }
    return p;
}

/*
 * Read one value at the reader's position, depth containers deep (the top
 * value is at depth 0).
 */
static PyObject *
readValue(Reader *r, Py_ssize_t depth)
{
    const unsigned char *p;
    Py_ssize_t length;
    unsigned char byte;

    if (r->pos >= r->size) {
        return refuse("input ends in the middle of a value");
    }
    byte = r->data[r->pos++];
    if (byte <= 0x7f) {
        return PyLong_FromLong(byte);
    }
    if (byte >= 0xe0) {
        return PyLong_FromLong((long)byte - 0x100);
    }
    if (byte >= 0xa0 && byte <= 0xbf) {
        return readStr(r, byte & 0x1f);
    }
    if (byte >= 0x90 && byte <= 0x9f) {
        return readArray(r, byte & 0x0f, depth);
    }
    if (byte <= 0x8f) {
        return readMap(r, byte & 0x0f, depth);
    }
    switch (byte) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xc4: case 0xc5: case 0xc6:
        length = readLength(r, byte == 0xc4 ? 1 : byte == 0xc5 ? 2 : 4);
        if (length < 0) {
            return refuse("input ends in the middle of a bin header");
        }
        return readBin(r, length);
    case 0xc7: case 0xc8: case 0xc9:
        length = readLength(r, byte == 0xc7 ? 1 : byte == 0xc8 ? 2 : 4);
        if (length < 0) {
            return refuse("input ends in the middle of an extension header");
        }
        return readExtension(r, length);
    case 0xca: {
        uint32_t bits;
        float single;

        if ((p = takeNumber(r, 4)) == NULL) {
            return NULL;
        }
        bits = load32(p);
        memcpy(&single, &bits, sizeof(single));
        return PyFloat_FromDouble((double)single);
    }
    case 0xcb:
        if ((p = takeNumber(r, 8)) == NULL) {
            return NULL;
        }
        return PyFloat_FromDouble(loadDouble(p));
    case 0xcc:
        if ((p = takeNumber(r, 1)) == NULL) {
            return NULL;
        }
        return PyLong_FromLong(p[0]);
    case 0xcd:
        if ((p = takeNumber(r, 2)) == NULL) {
            return NULL;
        }
        return PyLong_FromLong(load16(p));
    case 0xce:
        if ((p = takeNumber(r, 4)) == NULL) {
            return NULL;
        }
        return PyLong_FromUnsignedLong(load32(p));
    case 0xcf:
        if ((p = takeNumber(r, 8)) == NULL) {
            return NULL;
        }
        return PyLong_FromUnsignedLongLong(load64(p));
    case 0xd0:
        if ((p = takeNumber(r, 1)) == NULL) {
            return NULL;
        }
        return PyLong_FromLong((int8_t)p[0]);
    case 0xd1:
        if ((p = takeNumber(r, 2)) == NULL) {
            return NULL;
        }
        return PyLong_FromLong((int16_t)load16(p));
    case 0xd2:
        if ((p = takeNumber(r, 4)) == NULL) {
            return NULL;
        }
        return PyLong_FromLong((long)(int32_t)load32(p));
    case 0xd3:
        if ((p = takeNumber(r, 8)) == NULL) {
            return NULL;
        }
        return PyLong_FromLongLong((long long)(int64_t)load64(p));
    case 0xd4: return readExtension(r, 1);
    case 0xd5: return readExtension(r, 2);
    case 0xd6: return readExtension(r, 4);
    case 0xd7: return readExtension(r, 8);
    case 0xd8: return readExtension(r, 16);
    case 0xd9: case 0xda: case 0xdb:
        length = readLength(r, byte == 0xd9 ? 1 : byte == 0xda ? 2 : 4);
        if (length < 0) {
            return refuse("input ends in the middle of a str header");
        }
        return readStr(r, length);
    case 0xdc: case 0xdd:
        length = readLength(r, byte == 0xdc ? 2 : 4);
        if (length < 0) {
            return refuse("input ends in the middle of an array header");
        }
        return readArray(r, length, depth);
    case 0xde: case 0xdf:
        length = readLength(r, byte == 0xde ? 2 : 4);
        if (length < 0) {
            return refuse("input ends in the middle of a map header");
        }
        return readMap(r, length, depth);
    default:
        /* 0xc1, never used. */
        return refuse("input holds the never-used byte c1");
    }
}

/*
 * The deepest nesting the decoder recurses to: the depth of msgpack's C
 * parser stack, which Limits.maxDepth may not exceed.  A caller asking for
 * more is refused, and so left to the reference decoder.
 */
#define NS_DECODE_DEPTH 1024

/*
 * Read a limit (or maxValues) into *limit.  Limits allows any positive
 * int, so one beyond the range of Py_ssize_t is clamped to it: no input
 * can reach such a limit.  Returns -1 with an exception set if it is not
 * an int.
 */
static int
readLimit(PyObject *number, Py_ssize_t *limit)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);

    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0) {
        *limit = overflow > 0 ? PY_SSIZE_T_MAX : PY_SSIZE_T_MIN;
        return 0;
    }
#if SIZEOF_SIZE_T < SIZEOF_LONG_LONG
    if (value > PY_SSIZE_T_MAX || value < PY_SSIZE_T_MIN) {
        *limit = value > 0 ? PY_SSIZE_T_MAX : PY_SSIZE_T_MIN;
        return 0;
    }
#endif
    *limit = (Py_ssize_t)value;
    return 0;
}

/*
 * Get the bytes of the input into view, for release by finish.  A buffer
 * of bytes that is not C-contiguous (a memoryview with a step) is read
 * from a copy, as the reference decoder copies every input that is not
 * bytes.  Anything else, a buffer of items longer than a byte or an object
 * that is not a buffer at all, is refused, and so left to the reference
 * decoder, which decides what to make of it.
 */
static int
getInput(PyObject *data, Py_buffer *view)
{
    PyObject *copy;
    Py_ssize_t itemsize;
    int status;

    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) == 0) {
        if (view->itemsize == 1) {
            return 0;
        }
        PyBuffer_Release(view);
        return refuseStatus("input is a buffer of items longer than a byte");
    }
    PyErr_Clear();
    if (PyObject_GetBuffer(data, view, PyBUF_FULL_RO) < 0) {
        PyErr_Clear();
        return refuseStatus("input is not a buffer of bytes");
    }
    itemsize = view->itemsize;
    PyBuffer_Release(view);
    if (itemsize != 1) {
        return refuseStatus("input is a buffer of items longer than a byte");
    }
    copy = PyBytes_FromObject(data);
    if (copy == NULL) {
        return -1;
    }
    /* The view keeps the copy alive until finish releases it. */
    status = PyObject_GetBuffer(copy, view, PyBUF_SIMPLE);
    Py_DECREF(copy);
    return status;
}

/*
 * Set up a reader from the arguments (data, maxSize, maxDepth, maxItems,
 * maxIntBytes, maxObjects, maxHashCollisions), starting at args[first].
 * On success the input's buffer is in view, for release by finish; on
 * failure nothing is held.
 */
static int
openInput(Reader *r, Py_buffer *view, PyObject *const *args, Py_ssize_t first)
{
    Py_ssize_t limits[6];
    int i;

    for (i = 0; i < 6; i++) {
        if (readLimit(args[first + i], &limits[i]) < 0) {
            return -1;
        }
    }
    if (limits[1] > NS_DECODE_DEPTH) {
        return refuseStatus("maxDepth is deeper than the decoder recurses");
    }
    if (getInput(args[0], view) < 0) {
        return -1;
    }
    r->data = view->buf;
    r->size = view->len;
    r->pos = 0;
    r->maxDepth = limits[1];
    r->maxItems = limits[2];
    r->maxIntBytes = limits[3];
    r->maxObjects = limits[4];
    r->maxCollisions = limits[5];
    r->objects = 0;
    if (r->size > limits[0]) {
        PyBuffer_Release(view);
        return refuseStatus("input over maxSize");
    }
    return 0;
}

/*
 * Finish a call: release the input, and make any failure other than
 * MemoryError a ValueError (a refusal), whatever raised it (a str that is
 * not UTF-8, a key that cannot be hashed...).
 */
static PyObject *
finish(Py_buffer *view, PyObject *result)
{
    PyBuffer_Release(view);
    if (result == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)
        && !PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "input refused");
    }
    return result;
}

PyObject *
ns_decode(PyObject *const *args, Py_ssize_t nargs)
{
    Reader r;
    Py_buffer view;
    PyObject *value;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "decode(data, maxSize, maxDepth, maxItems, maxIntBytes, "
                        "maxObjects, maxHashCollisions)");
        return NULL;
    }
    if (openInput(&r, &view, args, 1) < 0) {
        return NULL;
    }
    value = readValue(&r, 0);
    if (value != NULL && r.pos != r.size) {
        Py_DECREF(value);
        value = refuse("input holds bytes after the end of the value");
    }
    return finish(&view, value);
}

PyObject *
ns_decodeMany(PyObject *const *args, Py_ssize_t nargs)
{
    Reader r;
    Py_buffer view;
    PyObject *values = NULL, *value;
    Py_ssize_t maxValues, count = -1, i;
    unsigned char first;

    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "decodeMany(data, maxSize, maxDepth, maxItems, maxIntBytes, "
                        "maxObjects, maxHashCollisions, maxValues)");
        return NULL;
    }
    if (readLimit(args[7], &maxValues) < 0) {
        /* Not an int: the reference decoder compares it as it is. */
        PyErr_Clear();
        return refuse("maxValues is not an int");
    }
    if (openInput(&r, &view, args, 1) < 0) {
        return NULL;
    }
    if (r.size > 0) {
        first = r.data[r.pos++];
        if (first >= 0x90 && first <= 0x9f) {
            count = first & 0x0f;
        }
        else if (first == 0xdc || first == 0xdd) {
            count = readLength(&r, first == 0xdc ? 2 : 4);
        }
    }
    if (count < 1 || count > maxValues || count > r.size - r.pos) {
        return finish(&view, refuse("not a batch of at most maxValues values"));
    }
    values = PyList_New(count);
    if (values == NULL) {
        return finish(&view, NULL);
    }
    for (i = 0; i < count; i++) {
        /* Each value is limited as if it came alone; readValue refuses a
           marker, so the batch cannot be a tuple or set. */
        r.objects = 0;
        value = readValue(&r, 0);
        if (value == NULL) {
            Py_DECREF(values);
            return finish(&view, NULL);
        }
        PyList_SET_ITEM(values, i, value);
    }
    if (r.pos != r.size) {
        Py_DECREF(values);
        values = refuse("input holds bytes after the end of the batch");
    }
    return finish(&view, values);
}
