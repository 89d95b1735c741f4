/* Warehouse mirrors on DuckDB: app_<collection> created from a collection's schema, altered
 * when fields are added, renamed, removed or change type, and kept equal to the latest state
 * of every record by loading `changes`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
    uint64_t next_offset;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(wht_open(f->path, sizeof(f->path), "whm", &f->wh, &f->c), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wht_close(f->path, f->wh, f->c);
    free(f);
    return 0;
}

/* the "users" collection: id, name, age, active, born, tags (multi), meta (json), a password
 * and a hidden field that must never be mirrored */
static struct store_field users_fields[] = {
    {.id = "f_id", .name = "id", .type = STORE_FIELD_TEXT, .primary_key = true, .system = true},
    {.id = "f_name", .name = "name", .type = STORE_FIELD_TEXT},
    {.id = "f_age", .name = "age", .type = STORE_FIELD_NUMBER},
    {.id = "f_active", .name = "active", .type = STORE_FIELD_BOOL},
    {.id = "f_born", .name = "born", .type = STORE_FIELD_DATE},
    {.id = "f_tags", .name = "tags", .type = STORE_FIELD_SELECT, .max_select = 3},
    {.id = "f_meta", .name = "meta", .type = STORE_FIELD_JSON},
    {.id = "f_pw", .name = "password", .type = STORE_FIELD_PASSWORD, .hidden = true},
    {.id = "f_tk", .name = "tokenKey", .type = STORE_FIELD_TEXT, .hidden = true},
};

static struct store_collection users = {
    .id = "pbc_users",
    .name = "users",
    .type = STORE_COLLECTION_AUTH,
    .fields = users_fields,
    .n_fields = ARRAY_LEN(users_fields),
};

/* Loads one batch of changes given as a JSON array of
 * [collection_id, record_id, action, record-or-null]. */
static int load(struct fx *f, const char *changes_json, struct wh_load_stats *st)
{
    json_t *arr = json_loads(changes_json, 0, NULL);
    assert_non_null(arr);
    size_t n = json_array_size(arr);
    struct wh_change *ch = calloc(n ? n : 1, sizeof(*ch));
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(arr, i);
        const char *act = json_string_value(json_array_get(x, 2));
        ch[i] = (struct wh_change){
            .log_offset = f->next_offset + i,
            .id = (int64_t)(f->next_offset + i + 1),
            .collection = "users",
            .collection_id = json_string_value(json_array_get(x, 0)),
            .record_id = json_string_value(json_array_get(x, 1)),
            .action = strcmp(act, "create") == 0   ? WH_ACTION_CREATE
                      : strcmp(act, "update") == 0 ? WH_ACTION_UPDATE
                                                   : WH_ACTION_DELETE,
            .record = json_is_null(json_array_get(x, 3)) ? NULL : json_array_get(x, 3),
            .changed_at_us = 1700000000000000 + (int64_t)i,
        };
    }
    struct wh_load ld = {
        .consumer = "wh-changes", .topic = "changes", .next_offset = f->next_offset + n};
    int rc = wh_load_changes(f->c, &ld, ch, n, st);
    if (rc == 0)
        f->next_offset += n;
    free(ch);
    json_decref(arr);
    return rc;
}

static void test_create_mirror_columns(void **state)
{
    struct fx *f = *state;
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    assert_rows(f->c,
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = "
                "'app_users' ORDER BY column_index",
                "[[\"id\",\"VARCHAR\"],[\"name\",\"VARCHAR\"],[\"age\",\"DOUBLE\"],"
                "[\"active\",\"BOOLEAN\"],[\"born\",\"TIMESTAMP\"],[\"tags\",\"VARCHAR[]\"],"
                "[\"meta\",\"JSON\"]]");
    /* applying the same schema again changes nothing */
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    assert_rows(f->c, "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'app_users'",
                "[[7]]");
    /* a bad collection name is refused */
    struct store_collection bad = users;
    bad.name = "x\"; DROP TABLE events; --";
    assert_int_equal(wh_apply_collection(f->c, &bad), ERR_INVALID);
}

static void test_changes_follow_records(void **state)
{
    struct fx *f = *state;
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    struct wh_load_stats st;
    assert_int_equal(
        load(f,
             "[[\"pbc_users\",\"u1\",\"create\",{\"id\":\"u1\",\"name\":\"Ann\",\"age\":30,"
             "\"active\":true,\"born\":\"1990-01-02 03:04:05.000Z\",\"tags\":[\"a\",\"b\"],"
             "\"meta\":{\"k\":[1]},\"password\":\"secret\",\"tokenKey\":\"tk\"}],"
             "[\"pbc_users\",\"u2\",\"create\",{\"id\":\"u2\",\"name\":\"Bob\",\"age\":1.5,"
             "\"active\":false,\"born\":\"\",\"tags\":[],\"meta\":null}],"
             "[\"pbc_users\",\"u1\",\"update\",{\"id\":\"u1\",\"name\":\"Ann B\",\"age\":31,"
             "\"active\":true,\"born\":\"1990-01-02 03:04:05.000Z\",\"tags\":[\"c\"],"
             "\"meta\":{\"k\":[2]}}],"
             "[\"pbc_users\",\"u3\",\"create\",{\"id\":\"u3\",\"name\":\"Cy\",\"age\":\"old\"}],"
             "[\"pbc_users\",\"u4\",\"create\",{\"id\":\"u4\",\"name\":\"Di\"}],"
             "[\"pbc_users\",\"u4\",\"delete\",null]]",
             &st),
        0);
    assert_int_equal(st.rows, 6);
    assert_int_equal(st.rejects, 1);
    assert_rows(f->c, "SELECT * FROM app_users ORDER BY id",
                "[[\"u1\",\"Ann B\",31.0,true,\"1990-01-02T03:04:05.000Z\",[\"c\"],{\"k\":[2]}],"
                "[\"u2\",\"Bob\",1.5,false,null,[],null]]");
    assert_rows(f->c, "SELECT log_offset, reason FROM _rejects",
                "[[3,\"mirror app_users: field age: value does not fit column type DOUBLE\"]]");
    assert_rows(f->c, "SELECT count(*), count(DISTINCT record_id), max(log_offset) FROM changes",
                "[[6,4,5]]");
    /* password and hidden fields never reach the mirror */
    assert_rows(f->c,
                "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'app_users' AND "
                "column_name IN ('password', 'tokenKey')",
                "[[0]]");
    /* next batch: delete u1, fix u3, update u2 */
    assert_int_equal(load(f,
                          "[[\"pbc_users\",\"u1\",\"delete\",null],"
                          "[\"pbc_users\",\"u3\",\"update\",{\"id\":\"u3\",\"name\":\"Cy\","
                          "\"age\":70,\"tags\":\"solo\"}],"
                          "[\"pbc_users\",\"u2\",\"update\",{\"id\":\"u2\",\"name\":\"Bob\","
                          "\"age\":2}]]",
                          &st),
                     0);
    assert_rows(f->c, "SELECT id, name, age, tags FROM app_users ORDER BY id",
                "[[\"u2\",\"Bob\",2.0,null],[\"u3\",\"Cy\",70.0,[\"solo\"]]]");
    uint64_t next;
    assert_int_equal(wh_offset_get(f->c, "wh-changes", &next), 0);
    assert_int_equal(next, 9);
    /* events join the mirror */
    struct wh_event ev[2] = {
        {.log_offset = 0,
         .id = "e1",
         .type = "track",
         .event = "Paid",
         .user_id = "u2",
         .timestamp_us = 0,
         .original_timestamp_us = WH_NO_TIME,
         .sent_at_us = WH_NO_TIME,
         .received_at_us = WH_NO_TIME,
         .properties = "{\"amount\":5}"},
        {.log_offset = 1,
         .id = "e2",
         .type = "track",
         .event = "Paid",
         .user_id = "u3",
         .timestamp_us = 0,
         .original_timestamp_us = WH_NO_TIME,
         .sent_at_us = WH_NO_TIME,
         .received_at_us = WH_NO_TIME,
         .properties = "{\"amount\":7}"},
    };
    struct wh_load ld = {.consumer = "wh-events", .topic = "events", .next_offset = 2};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 2, NULL), 0);
    assert_rows(f->c,
                "SELECT u.name, sum((e.properties->>'amount')::INT) FROM events e "
                "JOIN app_users u ON u.id = e.user_id GROUP BY u.name ORDER BY 1",
                "[[\"Bob\",5],[\"Cy\",7]]");
}

static void test_change_without_mirror(void **state)
{
    struct fx *f = *state;
    struct wh_load_stats st;
    assert_int_equal(load(f, "[[\"pbc_other\",\"r1\",\"create\",{\"id\":\"r1\",\"x\":1}]]", &st),
                     0);
    assert_int_equal(st.rejects, 0);
    assert_rows(f->c, "SELECT collection_id, record_id, action, record FROM changes",
                "[[\"pbc_other\",\"r1\",\"create\",{\"id\":\"r1\",\"x\":1}]]");
}

static void test_new_mirror_is_filled_from_changes(void **state)
{
    struct fx *f = *state;
    /* changes arrive before the mirror exists */
    assert_int_equal(load(f,
                          "[[\"pbc_users\",\"u1\",\"create\",{\"id\":\"u1\",\"name\":\"A\"}],"
                          "[\"pbc_users\",\"u2\",\"create\",{\"id\":\"u2\",\"name\":\"B\"}],"
                          "[\"pbc_users\",\"u1\",\"update\",{\"id\":\"u1\",\"name\":\"A2\"}],"
                          "[\"pbc_users\",\"u2\",\"delete\",null],"
                          "[\"pbc_users\",\"u5\",\"create\",{\"id\":\"u5\",\"age\":true}]]",
                          NULL),
                     0);
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    assert_rows(f->c, "SELECT id, name FROM app_users ORDER BY id", "[[\"u1\",\"A2\"]]");
    assert_rows(f->c, "SELECT consumer, log_offset FROM _rejects", "[[\"mirror\",4]]");
    /* the connection read "no mirror" for pbc_users while loading above: later changes must
     * reach the mirror made since (the cached layouts are dropped by a schema change) */
    assert_int_equal(
        load(f, "[[\"pbc_users\",\"u3\",\"create\",{\"id\":\"u3\",\"name\":\"C\"}]]", NULL), 0);
    assert_rows(f->c, "SELECT id, name FROM app_users ORDER BY id",
                "[[\"u1\",\"A2\"],[\"u3\",\"C\"]]");
}

static void test_alter_follows_schema(void **state)
{
    struct fx *f = *state;
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    assert_int_equal(load(f,
                          "[[\"pbc_users\",\"u1\",\"create\",{\"id\":\"u1\",\"name\":\"A\","
                          "\"age\":3,\"active\":true,\"born\":\"2000-01-01 00:00:00.000Z\"}]]",
                          NULL),
                     0);
    /* rename name -> full_name and age -> years, drop active, add score, change born from
     * date to text */
    struct store_field v2[] = {
        {.id = "f_id", .name = "id", .type = STORE_FIELD_TEXT, .primary_key = true},
        {.id = "f_name", .name = "full_name", .type = STORE_FIELD_TEXT},
        {.id = "f_age", .name = "years", .type = STORE_FIELD_NUMBER},
        {.id = "f_born", .name = "born", .type = STORE_FIELD_TEXT},
        {.id = "f_tags", .name = "tags", .type = STORE_FIELD_SELECT, .max_select = 3},
        {.id = "f_meta", .name = "meta", .type = STORE_FIELD_JSON},
        {.id = "f_score", .name = "score", .type = STORE_FIELD_NUMBER},
    };
    struct store_collection c2 = users;
    c2.fields = v2;
    c2.n_fields = ARRAY_LEN(v2);
    if (wh_apply_collection(f->c, &c2) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    assert_rows(f->c,
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = "
                "'app_users' ORDER BY column_name",
                "[[\"born\",\"VARCHAR\"],[\"full_name\",\"VARCHAR\"],[\"id\",\"VARCHAR\"],"
                "[\"meta\",\"JSON\"],[\"score\",\"DOUBLE\"],[\"tags\",\"VARCHAR[]\"],"
                "[\"years\",\"DOUBLE\"]]");
    /* the type change refilled the mirror from `changes`: the old image has no full_name
     * key, so only what the latest image holds under the new names is there */
    assert_rows(f->c, "SELECT id, born FROM app_users", "[[\"u1\",\"2000-01-01 00:00:00.000Z\"]]");
    /* the new names are used by later changes */
    assert_int_equal(load(f,
                          "[[\"pbc_users\",\"u1\",\"update\",{\"id\":\"u1\",\"full_name\":\"A\","
                          "\"years\":4,\"score\":9.5,\"born\":\"x\"}]]",
                          NULL),
                     0);
    assert_rows(f->c, "SELECT id, full_name, years, score, born FROM app_users",
                "[[\"u1\",\"A\",4.0,9.5,\"x\"]]");
    /* swapping two names works */
    struct store_field v3[] = {
        {.id = "f_name", .name = "years", .type = STORE_FIELD_TEXT},
        {.id = "f_age", .name = "full_name", .type = STORE_FIELD_NUMBER},
    };
    struct store_collection c3 = users;
    c3.name = "members";
    c3.fields = v3;
    c3.n_fields = ARRAY_LEN(v3);
    if (wh_apply_collection(f->c, &c3) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    /* and the collection rename renamed the table */
    assert_rows(f->c, "SELECT id, years, full_name FROM app_members", "[[\"u1\",\"A\",4.0]]");
    assert_int_equal(wh_query(f->c, &(struct wh_query){.sql = "SELECT * FROM app_users"},
                              &(struct wh_result){0}),
                     ERR_INVALID);
    /* drop */
    assert_int_equal(wh_drop_collection(f->c, "pbc_users"), 0);
    assert_rows(f->c, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'app_%'",
                "[[0]]");
    assert_int_equal(wh_drop_collection(f->c, "pbc_users"), ERR_NOTFOUND);
    /* changes of a dropped collection only go to `changes` */
    assert_int_equal(load(f, "[[\"pbc_users\",\"u9\",\"create\",{\"id\":\"u9\"}]]", NULL), 0);
}

static void test_collections_swap_names(void **state)
{
    struct fx *f = *state;
    struct store_collection a = users, b = users;
    a.id = "pbc_a";
    a.name = "alpha";
    b.id = "pbc_b";
    b.name = "beta";
    assert_int_equal(wh_apply_collection(f->c, &a), 0);
    assert_int_equal(wh_apply_collection(f->c, &b), 0);
    assert_int_equal(load(f,
                          "[[\"pbc_a\",\"r1\",\"create\",{\"id\":\"r1\",\"name\":\"of a\"}],"
                          "[\"pbc_b\",\"r2\",\"create\",{\"id\":\"r2\",\"name\":\"of b\"}]]",
                          NULL),
                     0);
    /* the store swapped the names in one import; the loader applies one collection at a time */
    a.name = "beta";
    b.name = "alpha";
    if (wh_apply_collection(f->c, &a) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    if (wh_apply_collection(f->c, &b) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    assert_rows(f->c, "SELECT id, name FROM app_beta", "[[\"r1\",\"of a\"]]");
    assert_rows(f->c, "SELECT id, name FROM app_alpha", "[[\"r2\",\"of b\"]]");
    /* a name reused by a new collection before the old one's mirror is dropped */
    struct store_collection c = users;
    c.id = "pbc_c";
    c.name = "alpha";
    if (wh_apply_collection(f->c, &c) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    assert_int_equal(wh_drop_collection(f->c, "pbc_b"), 0);
    assert_rows(f->c, "SELECT count(*) FROM app_alpha", "[[0]]");
    assert_rows(f->c, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'app__parked%'",
                "[[0]]");
}

/* editor is VARCHAR; geoPoint is JSON {"lon":x,"lat":y}, queried with ->> and casts */
static void test_editor_and_geo_point_columns(void **state)
{
    struct fx *f = *state;
    struct store_field fields[] = {
        {.id = "f_id", .name = "id", .type = STORE_FIELD_TEXT, .primary_key = true},
        {.id = "f_notes", .name = "notes", .type = STORE_FIELD_EDITOR},
        {.id = "f_loc", .name = "loc", .type = STORE_FIELD_GEO_POINT},
    };
    struct store_collection places = {
        .id = "pbc_places", .name = "places", .fields = fields, .n_fields = ARRAY_LEN(fields)};
    assert_int_equal(wh_apply_collection(f->c, &places), 0);
    assert_rows(f->c,
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = "
                "'app_places' ORDER BY column_index",
                "[[\"id\",\"VARCHAR\"],[\"notes\",\"VARCHAR\"],[\"loc\",\"JSON\"]]");
    struct wh_load_stats st;
    assert_int_equal(load(f,
                          "[[\"pbc_places\",\"p1\",\"create\",{\"id\":\"p1\","
                          "\"notes\":\"<p>hi</p>\",\"loc\":{\"lon\":23.25,\"lat\":42.5}}],"
                          "[\"pbc_places\",\"p2\",\"create\",{\"id\":\"p2\",\"notes\":\"\","
                          "\"loc\":{\"lon\":0,\"lat\":0}}]]",
                          &st),
                     0);
    assert_int_equal(st.rejects, 0);
    assert_rows(f->c,
                "SELECT id, notes, (loc->>'lon')::DOUBLE, (loc->>'lat')::DOUBLE FROM app_places "
                "ORDER BY id",
                "[[\"p1\",\"<p>hi</p>\",23.25,42.5],[\"p2\",\"\",0.0,0.0]]");
}

/* A view collection's mirror is a DuckDB view running its query over the mirrors: current
 * with every load, renamed and dropped with the collection; a query DuckDB cannot run is
 * ERR_INVALID and leaves no mirror. */
static void test_view_collection_mirror(void **state)
{
    struct fx *f = *state;
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    assert_int_equal(
        load(f,
             "[[\"pbc_users\",\"u1\",\"create\",{\"id\":\"u1\",\"name\":\"a\",\"age\":30}],"
             "[\"pbc_users\",\"u2\",\"create\",{\"id\":\"u2\",\"name\":\"a\",\"age\":12}],"
             "[\"pbc_users\",\"u3\",\"create\",{\"id\":\"u3\",\"name\":\"b\",\"age\":5}]]",
             NULL),
        0);
    struct store_field vf[] = {
        {.id = "v_id", .name = "id", .type = STORE_FIELD_TEXT, .primary_key = true},
        {.id = "v_n", .name = "n", .type = STORE_FIELD_NUMBER},
    };
    struct store_collection view = {
        .id = "pbc_byname",
        .name = "by_name",
        .type = STORE_COLLECTION_VIEW,
        .fields = vf,
        .n_fields = ARRAY_LEN(vf),
        .view_query = "SELECT min(id) AS id, name, count(*) AS n, sum(age) AS years FROM users "
                      "GROUP BY name ORDER BY name",
    };
    struct store_field of[] = {{.id = "o_id", .name = "id", .type = STORE_FIELD_TEXT}};
    struct store_collection other = {
        .id = "pbc_other", .name = "other", .fields = of, .n_fields = ARRAY_LEN(of)};
    assert_int_equal(wh_apply_collection(f->c, &other), 0);
    assert_int_equal(wh_apply_collection(f->c, &view), 0);
    /* a mirror the view does not read may go */
    assert_int_equal(wh_drop_collection(f->c, "pbc_other"), 0);
    assert_rows(f->c, "SELECT name, n, years FROM app_by_name ORDER BY name",
                "[[\"a\",2,42.0],[\"b\",1,5.0]]");
    assert_rows(f->c,
                "SELECT table_type FROM information_schema.tables WHERE table_name = "
                "'app_by_name'",
                "[[\"VIEW\"]]");
    /* the view follows the next load: nothing to refresh */
    assert_int_equal(
        load(f, "[[\"pbc_users\",\"u3\",\"update\",{\"id\":\"u3\",\"name\":\"a\",\"age\":1}]]",
             NULL),
        0);
    assert_rows(f->c, "SELECT name, n FROM app_by_name", "[[\"a\",3]]");
    /* the tables under it still change: a new field, a field changing type (refill) */
    struct store_field more[ARRAY_LEN(users_fields) + 1];
    memcpy(more, users_fields, sizeof(users_fields));
    more[ARRAY_LEN(users_fields)] =
        (struct store_field){.id = "f_city", .name = "city", .type = STORE_FIELD_TEXT};
    more[3].type = STORE_FIELD_TEXT; /* active: bool -> text */
    struct store_collection users2 = users;
    users2.fields = more;
    users2.n_fields = ARRAY_LEN(more);
    assert_int_equal(wh_apply_collection(f->c, &users2), 0);
    assert_rows(f->c, "SELECT name, n FROM app_by_name", "[[\"a\",3]]");
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    /* renamed with the collection, applied again without harm */
    view.name = "grouped";
    assert_int_equal(wh_apply_collection(f->c, &view), 0);
    assert_int_equal(wh_apply_collection(f->c, &view), 0);
    assert_rows(f->c, "SELECT n FROM app_grouped", "[[3]]");
    assert_rows(f->c,
                "SELECT count(*) FROM information_schema.tables WHERE table_name = "
                "'app_by_name'",
                "[[0]]");
    /* SQL DuckDB cannot run leaves no mirror, and so does a second statement smuggled in */
    struct store_collection bad = view;
    bad.id = "pbc_bad";
    bad.name = "bad";
    bad.view_query = "SELECT id FROM users WHERE nosuchfunction(name)";
    assert_int_equal(wh_apply_collection(f->c, &bad), ERR_INVALID);
    bad.view_query = "SELECT id FROM users); DROP TABLE app_users; SELECT (1";
    assert_int_equal(wh_apply_collection(f->c, &bad), ERR_INVALID);
    assert_rows(f->c, "SELECT count(*) FROM app_users", "[[3]]");
    assert_rows(f->c, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'app_bad'",
                "[[0]]");
    /* dropped with the collection; the tables it read stay */
    assert_int_equal(wh_drop_collection(f->c, "pbc_byname"), 0);
    assert_rows(f->c,
                "SELECT count(*) FROM information_schema.tables WHERE table_name = "
                "'app_grouped'",
                "[[0]]");
    assert_rows(f->c, "SELECT count(*) FROM app_users", "[[3]]");
}

static void test_load_changes_rejects_missing_ids(void **state)
{
    struct fx *f = *state;
    struct wh_change ch = {.log_offset = 0, .collection_id = NULL, .record_id = "x"};
    struct wh_load ld = {.consumer = "c", .topic = "changes", .next_offset = 1};
    assert_int_equal(wh_load_changes(f->c, &ld, &ch, 1, NULL), ERR_INVALID);
    uint64_t next;
    assert_int_equal(wh_offset_get(f->c, "c", &next), ERR_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_mirror_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_follow_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_without_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_mirror_is_filled_from_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alter_follows_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collections_swap_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_changes_rejects_missing_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_editor_and_geo_point_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_collection_mirror, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
