/* whd_ml.c - what the ML module needs from DuckDB: a read-only query streamed chunk by chunk
 * as numeric and text columns (training data goes straight from the engine's vectors into
 * the caller's arrays, no JSON in between), and the scalar function tandem_predict. */
#include <math.h>
#include <string.h>

#include "warehouse/duckdb/whd_int.h"

/* ---- streaming scan ---- */

static enum wh_col_kind col_kind(duckdb_type t)
{
    switch (t) {
    case DUCKDB_TYPE_BOOLEAN:
    case DUCKDB_TYPE_TINYINT:
    case DUCKDB_TYPE_SMALLINT:
    case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_BIGINT:
    case DUCKDB_TYPE_UTINYINT:
    case DUCKDB_TYPE_USMALLINT:
    case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_UBIGINT:
    case DUCKDB_TYPE_HUGEINT:
    case DUCKDB_TYPE_FLOAT:
    case DUCKDB_TYPE_DOUBLE:
    case DUCKDB_TYPE_DECIMAL: return WH_COL_NUM;
    case DUCKDB_TYPE_VARCHAR: return WH_COL_TEXT;
    default: return WH_COL_OTHER;
    }
}

static double hugeint_double(duckdb_hugeint h)
{
    return (double)h.upper * 18446744073709551616.0 + (double)h.lower;
}

/* One numeric vector as doubles, NaN for NULL. */
/* One loop per type (the switch is outside the loop, so each loop is a plain conversion the
 * compiler vectorises), then NULLs as NaN and decimals scaled. */
#define VEC_CONV(T)                                                                                \
    do {                                                                                           \
        const T *src = data;                                                                       \
        for (size_t i = 0; i < n; i++)                                                             \
            out[i] = (double)src[i];                                                               \
    } while (0)

static void vec_numbers(duckdb_logical_type lt, duckdb_vector v, size_t n, double *out)
{
    void *data = duckdb_vector_get_data(v);
    uint64_t *valid = duckdb_vector_get_validity(v);
    duckdb_type t = duckdb_get_type_id(lt);
    double scale = 1;
    if (t == DUCKDB_TYPE_DECIMAL) {
        scale = pow(10, duckdb_decimal_scale(lt));
        t = duckdb_decimal_internal_type(lt);
    }
    switch (t) {
    case DUCKDB_TYPE_BOOLEAN: {
        const bool *src = data;
        for (size_t i = 0; i < n; i++)
            out[i] = src[i] ? 1 : 0;
        break;
    }
    case DUCKDB_TYPE_TINYINT: VEC_CONV(int8_t); break;
    case DUCKDB_TYPE_SMALLINT: VEC_CONV(int16_t); break;
    case DUCKDB_TYPE_INTEGER: VEC_CONV(int32_t); break;
    case DUCKDB_TYPE_BIGINT: VEC_CONV(int64_t); break;
    case DUCKDB_TYPE_UTINYINT: VEC_CONV(uint8_t); break;
    case DUCKDB_TYPE_USMALLINT: VEC_CONV(uint16_t); break;
    case DUCKDB_TYPE_UINTEGER: VEC_CONV(uint32_t); break;
    case DUCKDB_TYPE_UBIGINT: VEC_CONV(uint64_t); break;
    case DUCKDB_TYPE_HUGEINT: {
        const duckdb_hugeint *src = data;
        for (size_t i = 0; i < n; i++)
            out[i] = hugeint_double(src[i]);
        break;
    }
    case DUCKDB_TYPE_FLOAT: VEC_CONV(float); break;
    case DUCKDB_TYPE_DOUBLE: memcpy(out, data, n * sizeof(double)); break;
    default:
        for (size_t i = 0; i < n; i++)
            out[i] = NAN;
    }
    if (scale != 1)
        for (size_t i = 0; i < n; i++)
            out[i] /= scale;
    if (valid)
        for (size_t i = 0; i < n; i++)
            if (!duckdb_validity_row_is_valid(valid, i))
                out[i] = NAN;
}
#undef VEC_CONV

static void vec_texts(duckdb_vector v, size_t n, struct str *out)
{
    duckdb_string_t *data = duckdb_vector_get_data(v);
    uint64_t *valid = duckdb_vector_get_validity(v);
    for (size_t i = 0; i < n; i++) {
        if (valid && !duckdb_validity_row_is_valid(valid, i)) {
            out[i].ptr = NULL;
            out[i].len = 0;
            continue;
        }
        out[i].ptr = duckdb_string_t_data(&data[i]);
        out[i].len = duckdb_string_t_length(data[i]);
    }
}

int whd__scan(struct wh_conn *wc, const char *sql, wh_scan_cb cb, void *arg)
{
    struct whd_conn *c = whd__conn(wc);
    duckdb_extracted_statements ex = NULL;
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool have_res = false, in_tx = false;
    struct wh_scan_col *cols = NULL;
    duckdb_logical_type *types = NULL;
    double **num = NULL;
    struct str **text = NULL;
    size_t n_cols = 0;
    int rc;

    if (!sql || !*sql)
        return whd__fail(c, ERR_INVALID, "query is missing");
    if (atomic_load(&c->stopping))
        return whd__fail(c, ERR_BUSY, "the warehouse connection is stopping");
    if ((rc = whd__exec(c, "BEGIN TRANSACTION READ ONLY")) < 0)
        goto out;
    in_tx = true;
    idx_t n = duckdb_extract_statements(c->con, sql, &ex);
    if (n != 1) {
        const char *e = n == 0 ? duckdb_extract_statements_error(ex) : NULL;
        rc = whd__fail(c, ERR_INVALID, "%s", e ? e : "exactly one SELECT statement is needed");
        goto out;
    }
    if (duckdb_prepare_extracted_statement(c->con, ex, 0, &ps) != DuckDBSuccess) {
        const char *e = duckdb_prepare_error(ps);
        rc = whd__fail(c, ERR_INVALID, "%s", e ? e : "cannot prepare the query");
        goto out;
    }
    if (duckdb_prepared_statement_type(ps) != DUCKDB_STATEMENT_TYPE_SELECT) {
        rc = whd__fail(c, ERR_DENIED, "only a SELECT query may give training data");
        goto out;
    }
    if ((rc = whd__sql_guard(c->con, sql, c->err, sizeof(c->err))) < 0)
        goto out;
    if (duckdb_execute_prepared_streaming(ps, &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, NULL);
        goto out;
    }
    have_res = true;
    n_cols = duckdb_column_count(&res);
    cols = xcalloc(n_cols ? n_cols : 1, sizeof(*cols));
    types = xcalloc(n_cols ? n_cols : 1, sizeof(*types));
    num = xcalloc(n_cols ? n_cols : 1, sizeof(*num));
    text = xcalloc(n_cols ? n_cols : 1, sizeof(*text));
    size_t cap = duckdb_vector_size();
    for (size_t j = 0; j < n_cols; j++) {
        cols[j].name = duckdb_column_name(&res, j);
        types[j] = duckdb_column_logical_type(&res, j);
        cols[j].kind = col_kind(duckdb_get_type_id(types[j]));
        if (cols[j].kind == WH_COL_NUM)
            num[j] = xmalloc(cap * sizeof(double));
        else if (cols[j].kind == WH_COL_TEXT)
            text[j] = xmalloc(cap * sizeof(struct str));
    }
    struct wh_scan_chunk chunk = {.n_cols = n_cols, .cols = cols, .num = num, .text = text};
    /* the column list once, with no rows, before any data */
    if ((rc = cb(arg, &chunk)) != 0)
        goto out;
    for (;;) {
        duckdb_data_chunk ch = duckdb_fetch_chunk(res);
        if (!ch)
            break;
        size_t rows = duckdb_data_chunk_get_size(ch);
        if (rows > cap) {
            duckdb_destroy_data_chunk(&ch);
            rc = whd__fail(c, ERR_INTERNAL, "a chunk larger than the vector size");
            goto out;
        }
        for (size_t j = 0; j < n_cols; j++) {
            duckdb_vector v = duckdb_data_chunk_get_vector(ch, j);
            if (cols[j].kind == WH_COL_NUM)
                vec_numbers(types[j], v, rows, num[j]);
            else if (cols[j].kind == WH_COL_TEXT)
                vec_texts(v, rows, text[j]);
        }
        chunk.n_rows = rows;
        rc = cb(arg, &chunk);
        duckdb_destroy_data_chunk(&ch);
        if (rc != 0)
            goto out;
    }
    /* a failure while streaming (an interrupt, a runtime error) shows on the result */
    if (duckdb_result_error(&res)) {
        rc = whd__fail(c, ERR_INVALID, "%s", duckdb_result_error(&res));
        goto out;
    }
    rc = 0;
out:
    for (size_t j = 0; j < n_cols; j++) {
        free(num[j]);
        free(text[j]);
        duckdb_destroy_logical_type(&types[j]);
    }
    free(num);
    free(text);
    free(types);
    free(cols);
    if (have_res)
        duckdb_destroy_result(&res);
    if (ps)
        duckdb_destroy_prepare(&ps);
    if (ex)
        duckdb_destroy_extracted(&ex);
    if (in_tx)
        whd__rollback(c);
    return rc;
}

/* ---- tandem_predict(model VARCHAR, x1, x2, ...) -> DOUBLE ---- */

struct scorer {
    wh_score_cb cb;
    void *arg;
};

static void predict_fn(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output)
{
    const struct scorer *s = duckdb_scalar_function_get_extra_info(info);
    size_t rows = duckdb_data_chunk_get_size(input);
    size_t n_x = duckdb_data_chunk_get_column_count(input) - 1, cap = rows ? rows : 1;
    double *out = duckdb_vector_get_data(output);
    struct str *nm = xmalloc(cap * sizeof(*nm));
    struct wh_scan_col *cols = xcalloc(n_x ? n_x : 1, sizeof(*cols));
    double **num = xcalloc(n_x ? n_x : 1, sizeof(*num));
    struct str **text = xcalloc(n_x ? n_x : 1, sizeof(*text));
    char err[256] = "";
    vec_texts(duckdb_data_chunk_get_vector(input, 0), rows, nm);
    /* each argument keeps its own type (varargs ANY): numbers as doubles, text as text, a
     * bare NULL as missing */
    for (size_t j = 0; j < n_x && !*err; j++) {
        duckdb_vector v = duckdb_data_chunk_get_vector(input, j + 1);
        duckdb_logical_type lt = duckdb_vector_get_column_type(v);
        duckdb_type t = duckdb_get_type_id(lt);
        cols[j].name = "";
        cols[j].kind = t == DUCKDB_TYPE_SQLNULL ? WH_COL_NUM : col_kind(t);
        if (cols[j].kind == WH_COL_TEXT) {
            text[j] = xmalloc(cap * sizeof(struct str));
            vec_texts(v, rows, text[j]);
        } else if (cols[j].kind == WH_COL_NUM) {
            num[j] = xmalloc(cap * sizeof(double));
            if (t == DUCKDB_TYPE_SQLNULL)
                for (size_t i = 0; i < rows; i++)
                    num[j][i] = NAN;
            else
                vec_numbers(lt, v, rows, num[j]);
        } else {
            snprintf(err, sizeof(err),
                     "tandem_predict: argument %zu is neither a number nor text (cast it)", j + 2);
        }
        duckdb_destroy_logical_type(&lt);
    }
    struct wh_scan_chunk ch = {
        .n_rows = rows, .n_cols = n_x, .cols = cols, .num = num, .text = text};
    /* runs of rows that name the same model are scored together */
    for (size_t i = 0; i < rows && !*err;) {
        if (!nm[i].ptr) {
            snprintf(err, sizeof(err), "tandem_predict: the model name is NULL");
            break;
        }
        size_t e = i + 1;
        while (e < rows && nm[e].ptr && str_eq(nm[e], nm[i]))
            e++;
        if (s->cb(s->arg, nm[i].ptr, nm[i].len, &ch, i, e - i, out + i, err, sizeof(err)) != 0)
            break;
        i = e;
    }
    if (*err)
        duckdb_scalar_function_set_error(info, err);
    for (size_t j = 0; j < n_x; j++) {
        free(num[j]);
        free(text[j]);
    }
    free(num);
    free(text);
    free(cols);
    free(nm);
}

int whd__set_scorer(struct wh *w, wh_score_cb cb, void *arg)
{
    struct whd *d = (struct whd *)w;
    duckdb_connection con = NULL;
    if (duckdb_connect(d->db, &con) != DuckDBSuccess)
        return ERR_INTERNAL;
    int rc = 0;
    if (whd__has_function(con, "tandem_predict"))
        goto out; /* one scorer per database, for the life of the process */
    duckdb_scalar_function f = duckdb_create_scalar_function();
    duckdb_scalar_function_set_name(f, "tandem_predict");
    duckdb_logical_type vt = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    duckdb_logical_type dt = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
    duckdb_logical_type at = duckdb_create_logical_type(DUCKDB_TYPE_ANY);
    duckdb_scalar_function_add_parameter(f, vt);
    duckdb_scalar_function_set_varargs(f, at);
    duckdb_scalar_function_set_return_type(f, dt);
    duckdb_scalar_function_set_special_handling(f); /* NULL features are missing, not NULL */
    duckdb_scalar_function_set_volatile(f);         /* the active version may change */
    struct scorer *s = xmalloc(sizeof(*s));
    s->cb = cb;
    s->arg = arg;
    duckdb_scalar_function_set_extra_info(f, s, free);
    duckdb_scalar_function_set_function(f, predict_fn);
    rc = duckdb_register_scalar_function(con, f) == DuckDBSuccess ? 0 : ERR_INTERNAL;
    duckdb_destroy_scalar_function(&f);
    duckdb_destroy_logical_type(&vt);
    duckdb_destroy_logical_type(&dt);
    duckdb_destroy_logical_type(&at);
out:
    duckdb_disconnect(&con);
    return rc;
}
