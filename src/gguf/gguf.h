/*
 * gguf — read and write GGUF files (versions 2 and 3).
 *
 * Reading: gguf_open() memory-maps the file read-only and validates all of it
 * before returning: magic, version, counts, every string and array length,
 * every metadata value type, tensor names (unique, non-empty), dimension counts
 * (1..4) and sizes (positive, no overflow), tensor types, general.alignment (a
 * power of two), data offsets (aligned) and that every tensor's bytes lie
 * inside the file. A bad file yields NULL and one line in err naming the file,
 * what is wrong and the byte offset where it was found. After a successful
 * open nothing else ever reads outside the mapping. Also refused: arrays of
 * arrays (legal in the spec, written by no tool we know), bool values other
 * than 0 and 1, empty keys or names, keys or names holding a NUL byte, keys
 * longer than 65535 bytes and tensor names longer than 65536. Lookups by key
 * and by tensor name go through hash indexes (O(1)).
 *
 * Strings in the file are not NUL-terminated; struct gguf_str points into the
 * mapping. Keys and tensor names are copied into NUL-terminated strings.
 *
 * Writing: a gguf_writer collects metadata and tensors (their data borrowed
 * until gguf_writer_write) and writes a v3 file in the layout llama.cpp writes
 * (metadata, tensor infos, padding to general.alignment, data), via a
 * temporary file renamed into place.
 *
 * This header also defines the tensor types as the file format numbers them,
 * with their block sizes, since validation needs them.
 */
#ifndef MAAS_GGUF_H
#define MAAS_GGUF_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- tensor types, numbered as in GGUF / ggml ---- */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40,
};

/* Block size (elements per block) and bytes per block; 0 for numbers that
 * are not a known type. */
int64_t ggml_blck_size(enum ggml_type t);
size_t ggml_type_size(enum ggml_type t);
bool ggml_type_known(uint32_t t);
/* Bytes of a row of ne0 elements (ne0 must be a multiple of the block size). */
size_t ggml_row_size(enum ggml_type t, int64_t ne0);
/* Lower-case name as users write it: "f32", "q4_k", "bf16"; "?" if unknown. */
const char *ggml_type_name(enum ggml_type t);
/* Parses a lower- or upper-case name; returns -1 if unknown. */
int ggml_type_from_name(const char *name);

/* ---- metadata value types ---- */
enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT = 13,
};
const char *gguf_vtype_name(enum gguf_vtype t);
/* Bytes of one value of a numeric or bool type; 0 for string and array. */
size_t gguf_vtype_size(enum gguf_vtype t);

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

struct gguf_str {
    const char *ptr; /* borrowed: into the mapping (or the writer's copy); not NUL-terminated */
    uint64_t len;
};

struct gguf_kv {
    char *key;             /* NUL-terminated, from malloc */
    enum gguf_vtype type;
    const void *val;       /* borrowed: the raw little-endian scalar in the mapping (may be unaligned); for STRING unused */
    struct gguf_str str;   /* type == STRING */
    /* type == ARRAY: */
    enum gguf_vtype arr_type;
    uint64_t arr_n;
    const void *arr_data;     /* numeric arrays: raw elements in the mapping (may be unaligned) */
    struct gguf_str *arr_strs; /* string arrays: arr_n entries, from malloc */
};

struct gguf_tensor {
    char *name;            /* NUL-terminated, from malloc */
    enum ggml_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint64_t offset;       /* from the start of the data section */
    uint64_t nbytes;
    const void *data;      /* borrowed: into the read-only mapping */
};

struct gguf_file;

/* Opens and validates a file. NULL on failure with the reason in e. */
struct gguf_file *gguf_open(const char *path, struct err *e);
/* The same, but the file is read into anonymous memory advised for huge
 * pages (MADV_HUGEPAGE) instead of mapped: a decode step streams every
 * weight, and with 4 KiB page-cache pages the TLB misses cost about an
 * eighth of its speed (README, Performance). The page cache's copy is
 * dropped afterwards (POSIX_FADV_DONTNEED). Falls back to gguf_open when
 * no anonymous memory of that size can be had. */
struct gguf_file *gguf_open_copy(const char *path, struct err *e);
/* The same for bytes in memory (borrowed for the life of the result); name
 * is used in messages. For tests and fuzzing. */
struct gguf_file *gguf_open_mem(const void *data, size_t size, const char *name, struct err *e);
void gguf_close(struct gguf_file *f); /* NULL does nothing */

const char *gguf_name(const struct gguf_file *f);   /* path or name given */
uint32_t gguf_version(const struct gguf_file *f);
size_t gguf_size(const struct gguf_file *f);        /* bytes of the file */
uint64_t gguf_alignment(const struct gguf_file *f);
uint64_t gguf_data_offset(const struct gguf_file *f);

size_t gguf_n_kv(const struct gguf_file *f);
const struct gguf_kv *gguf_kv_at(const struct gguf_file *f, size_t i);
const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key); /* NULL if absent */

/* Typed getters. Return 0 and write *out when the key exists with a
 * compatible type (any integer type for get_int when the value fits; float32
 * or float64 for get_float; bool for get_bool; string for get_str). -1 with
 * out untouched otherwise: ERR_NOT_FOUND in e when the key is absent (an
 * optional key reads as `if (gguf_get_int(f, k, &v, e) < 0 && e->code !=
 * ERR_NOT_FOUND) return -1;`), ERR_CORRUPT on a wrong type. */
int gguf_get_int(const struct gguf_file *f, const char *key, int64_t *out, struct err *e);
int gguf_get_float(const struct gguf_file *f, const char *key, double *out, struct err *e);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, struct err *e);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out, struct err *e);
/* An array of the given element type (GGUF_VT_COUNT for any). */
int gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype elem, const struct gguf_kv **out,
                 struct err *e);

/* Element i of a numeric array, converted. Asserts i < arr_n and a numeric type. */
int64_t gguf_arr_int(const struct gguf_kv *kv, uint64_t i);
double gguf_arr_float(const struct gguf_kv *kv, uint64_t i);
/* Scalar value of a numeric kv, converted. */
int64_t gguf_kv_int(const struct gguf_kv *kv);
double gguf_kv_float(const struct gguf_kv *kv);

/* Compares a gguf_str with a C string. */
bool gguf_str_eq(struct gguf_str s, const char *c);

size_t gguf_n_tensors(const struct gguf_file *f);
const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, size_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name); /* NULL if absent */
int64_t gguf_tensor_nelements(const struct gguf_tensor *t);

/* ---- writing ---- */
struct gguf_writer;
struct gguf_writer *gguf_writer_new(void); /* NULL on out of memory */
void gguf_writer_free(struct gguf_writer *w);

/* Setting a key that already exists replaces its value in place (order is
 * kept); otherwise the key is appended. All values are copied. 0 or -1 (out
 * of memory). */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* A string of len bytes (it may hold NUL bytes). */
int gguf_writer_set_strn(struct gguf_writer *w, const char *key, const char *v, uint64_t len);
/* A scalar of any numeric or bool type, val pointing at its raw little-endian bytes. */
int gguf_writer_set_val(struct gguf_writer *w, const char *key, enum gguf_vtype type, const void *val);
/* Numeric array of n elements of type elem, raw little-endian. */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *data, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs, uint64_t n);
/* Copies one key/value read from another file. */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv);
int gguf_writer_remove(struct gguf_writer *w, const char *key); /* 0 whether or not it existed */

/* Adds a tensor; data (nbytes = ggml_row_size(type, ne[0]) * rows) is
 * borrowed until gguf_writer_write returns. -1 with a reason on a duplicate
 * name, bad shape or wrong byte count. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int n_dims,
                           const int64_t *ne, const void *data, uint64_t nbytes, struct err *e);

/* Writes the file (to path.tmp, then renamed). -1 with the reason on I/O error. */
int gguf_writer_write(struct gguf_writer *w, const char *path, struct err *e);

#endif
