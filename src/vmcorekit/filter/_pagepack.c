/* The filter's hot loop in C: compress a batch of pages and pack their stored bytes back to
 * back, in one call per batch with the GIL released (compress.py is the caller and keeps a
 * pure-Python path that gives the same bytes).
 *
 * The codec libraries are the very ones the Python path uses, opened at run time with dlopen:
 * liblzo2's lzo1x_1_compress (makedumpfile's LZO, which the Python path calls through ctypes)
 * and the system libz's compress2 at level 1 (what Python's zlib.compress(page, 1) runs). So
 * building needs only a C compiler and Python's headers, no codec headers; a library that is
 * absent at run time makes the codec unavailable here, and compress.py falls back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CODEC_LZO = 1, CODEC_ZLIB = 2 };

typedef int (*lzo_compress_fn)(const unsigned char *, size_t, unsigned char *, size_t *, void *);
typedef int (*lzo_init_fn)(unsigned, int, int, int, int, int, int, int, int, int);
typedef unsigned (*lzo_version_fn)(void);
typedef int (*z_compress2_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long, int);
typedef const char *(*z_version_fn)(void);

static lzo_compress_fn lzo1x_1 = NULL;
static z_compress2_fn z_compress2 = NULL;
static char z_version[64] = "";

/* LZO1X_1_MEM_COMPRESS: 16384 dictionary entries of a pointer each. */
#define LZO_WRKMEM (16384 * sizeof(void *))

static int open_lzo(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
    lzo_init_fn init = (lzo_init_fn)dlsym(h, "__lzo_init_v2");
    lzo_version_fn version = (lzo_version_fn)dlsym(h, "lzo_version");
    lzo_compress_fn fn = (lzo_compress_fn)dlsym(h, "lzo1x_1_compress");
    if (!init || !version || !fn) {
        dlclose(h);
        return 0;
    }
    /* lzo_init(): the library checks our idea of its ABI (as compress.py's ctypes loader). */
    if (init(version(), (int)sizeof(short), (int)sizeof(int), (int)sizeof(long), 4, (int)sizeof(size_t),
             (int)sizeof(void *), (int)sizeof(char *), (int)sizeof(void *), (int)(6 * sizeof(void *))) != 0) {
        dlclose(h);
        return 0;
    }
    lzo1x_1 = fn;
    return 1;
}

static int open_zlib(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
    z_compress2_fn fn = (z_compress2_fn)dlsym(h, "compress2");
    z_version_fn version = (z_version_fn)dlsym(h, "zlibVersion");
    if (!fn || !version) {
        dlclose(h);
        return 0;
    }
    z_compress2 = fn;
    snprintf(z_version, sizeof z_version, "%s", version());
    return 1;
}

/* load(codec, library names) -> the library's version string (zlib) or "" (LZO), or None
 * when none of the names opens as a usable library. */
static PyObject *pp_load(PyObject *self, PyObject *args) {
    int codec;
    PyObject *names;
    if (!PyArg_ParseTuple(args, "iO", &codec, &names))
        return NULL;
    PyObject *seq = PySequence_Fast(names, "library names must be a sequence");
    if (!seq)
        return NULL;
    int ok = (codec == CODEC_LZO && lzo1x_1) || (codec == CODEC_ZLIB && z_compress2);
    for (Py_ssize_t i = 0; !ok && i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *name = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!name) {
            Py_DECREF(seq);
            return NULL;
        }
        ok = codec == CODEC_LZO ? open_lzo(name) : codec == CODEC_ZLIB ? open_zlib(name) : 0;
    }
    Py_DECREF(seq);
    if (!ok)
        Py_RETURN_NONE;
    return PyUnicode_FromString(codec == CODEC_ZLIB ? z_version : "");
}

/* pack(codec, pages, rows, zero, zero_bytes, page_size) -> (sizes, data)
 *
 * pages: n x page_size bytes (C-contiguous buffer); rows: int64 row numbers into pages, in
 * output order; zero: one byte per entry of rows, nonzero where that row is all zeros (it is
 * stored as zero_bytes, compressed once by the caller). Every other row is compressed; one
 * that does not shrink is stored raw (page_size bytes). sizes: uint32 per entry of rows, as
 * bytes; data: the stored bytes back to back. */
static PyObject *pp_pack(PyObject *self, PyObject *args) {
    int codec;
    Py_buffer pages, rows, zero, zbytes;
    Py_ssize_t ps;
    if (!PyArg_ParseTuple(args, "iy*y*y*y*n", &codec, &pages, &rows, &zero, &zbytes, &ps))
        return NULL;
    PyObject *sizes_obj = NULL, *data_obj = NULL, *result = NULL;
    void *wrkmem = NULL;
    Py_ssize_t n = rows.len / (Py_ssize_t)sizeof(int64_t);
    if ((codec == CODEC_LZO && !lzo1x_1) || (codec == CODEC_ZLIB && !z_compress2) ||
        (codec != CODEC_LZO && codec != CODEC_ZLIB)) {
        PyErr_SetString(PyExc_ValueError, "codec not loaded");
        goto done;
    }
    if (ps <= 0 || ps > (1 << 24) || pages.len % ps || rows.len % sizeof(int64_t) || zero.len != n ||
        zbytes.len > ps) {
        PyErr_SetString(PyExc_ValueError, "inconsistent batch");
        goto done;
    }
    Py_ssize_t npages = pages.len / ps;
    const int64_t *row = (const int64_t *)rows.buf;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (row[k] < 0 || row[k] >= npages) {
            PyErr_SetString(PyExc_IndexError, "row out of the batch");
            goto done;
        }
    }
    /* Each page moves the cursor by at most ps, and a codec writes at most `slack` past it:
     * LZO's worst case is ps + ps/16 + 67, zlib's compressBound is smaller. */
    Py_ssize_t slack = ps + ps / 16 + 64 + 3;
    if (n > (PY_SSIZE_T_MAX - slack) / ps) {
        PyErr_NoMemory();
        goto done;
    }
    sizes_obj = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    data_obj = PyBytes_FromStringAndSize(NULL, n * ps + slack);
    if (!sizes_obj || !data_obj)
        goto done;
    if (codec == CODEC_LZO && !(wrkmem = malloc(LZO_WRKMEM))) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t *sizes = (uint32_t *)PyBytes_AS_STRING(sizes_obj);
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data_obj), *o = out;
    const unsigned char *base = (const unsigned char *)pages.buf, *zflag = (const unsigned char *)zero.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        const unsigned char *src = base + row[k] * ps;
        size_t got = 0;
        int ok = 0;
        if (zflag[k]) {
            memcpy(o, zbytes.buf, (size_t)zbytes.len);
            sizes[k] = (uint32_t)zbytes.len;
            o += zbytes.len;
            continue;
        }
        if (codec == CODEC_LZO) {
            ok = lzo1x_1(src, (size_t)ps, o, &got, wrkmem) == 0;
        } else {
            /* compress2(..., 1): deflate level 1, 32 KiB window, memLevel 8, as zlib.compress. */
            unsigned long cap = (unsigned long)slack, len = cap;
            ok = z_compress2(o, &len, src, (unsigned long)ps, 1) == 0;
            got = len;
        }
        if (!ok || got >= (size_t)ps) {
            memcpy(o, src, (size_t)ps); /* does not shrink: stored raw */
            got = (size_t)ps;
        }
        sizes[k] = (uint32_t)got;
        o += got;
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&data_obj, o - out) < 0)
        goto done;
    result = PyTuple_Pack(2, sizes_obj, data_obj);
done:
    free(wrkmem);
    Py_XDECREF(sizes_obj);
    Py_XDECREF(data_obj);
    PyBuffer_Release(&pages);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&zero);
    PyBuffer_Release(&zbytes);
    return result;
}

/* zero_rows(pages, page_size) -> bytes, one per page: 1 where the page is all zeros. A page
 * with data is left at its first nonzero word (most are, within a few bytes). */
static PyObject *pp_zero_rows(PyObject *self, PyObject *args) {
    Py_buffer pages;
    Py_ssize_t ps;
    if (!PyArg_ParseTuple(args, "y*n", &pages, &ps))
        return NULL;
    PyObject *out = NULL;
    if (ps <= 0 || ps % 8 || pages.len % ps) {
        PyErr_SetString(PyExc_ValueError, "pages are not whole pages of a multiple of 8 bytes");
        goto done;
    }
    Py_ssize_t n = pages.len / ps;
    out = PyBytes_FromStringAndSize(NULL, n);
    if (!out)
        goto done;
    unsigned char *z = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *base = (const unsigned char *)pages.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *p = base + i * ps;
        uint64_t acc = 0;
        Py_ssize_t k = 0;
        /* 64 bytes at a time, stopping at the first block with a set bit */
        for (; k + 64 <= ps && !acc; k += 64) {
            uint64_t w[8];
            memcpy(w, p + k, 64);
            acc = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
        }
        for (; k < ps && !acc; k += 8) {
            uint64_t w;
            memcpy(&w, p + k, 8);
            acc = w;
        }
        z[i] = acc == 0;
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&pages);
    return out;
}

static PyMethodDef methods[] = {
    {"zero_rows", pp_zero_rows, METH_VARARGS, "zero_rows(pages, page_size) -> bytes: 1 for each all-zero page"},
    {"load", pp_load, METH_VARARGS, "load(codec, names) -> version string, or None if no name opens"},
    {"pack", pp_pack, METH_VARARGS, "pack(codec, pages, rows, zero, zero_bytes, page_size) -> (sizes, data)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pagepack", "The filter's page compression loop in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__pagepack(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "LZO", CODEC_LZO) < 0 || PyModule_AddIntConstant(m, "ZLIB", CODEC_ZLIB) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
