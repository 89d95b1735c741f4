/* records_int.h - shared by the collection and record resources of api/ only. */
#ifndef TANDEM_API_RECORDS_INT_H
#define TANDEM_API_RECORDS_INT_H

#include "api/api_int.h"
#include "store/store.h"

#define API_EXPAND_MAX_DEPTH 6
#define API_BACKREL_MAX 1000
/* Records one request's expand may load in all; further relations are left unexpanded. */
#define API_EXPAND_MAX_RECORDS 20000

/* Answers 503 and returns false when there is no store; answers 401/403 (collections API) or
 * 403 "Only superusers can perform this action." (records) and returns false unless the
 * request is a superuser's. */
bool api__require_superuser(struct http_req *req, struct api_env *env, bool collections_api);

/* Expands the relation paths of `expand` ("author,comments_via_post.user") in every record
 * of the array (records of c). Unknown paths and missing records are skipped silently. */
void api__expand(struct api_env *env, const struct store_collection *c, json_t *records,
                 const char *expand);

/* api__expand with another limit on the records loaded in all (API_EXPAND_MAX_RECORDS). */
void api__expand_max(struct api_env *env, const struct store_collection *c, json_t *records,
                     const char *expand, size_t max_records);

/* A copy of v that keeps only the keys named by `fields` ("id,title,expand.author.name",
 * "*", "body:excerpt(200,true)"). Arrays are picked element by element. RETURNS a new
 * reference; NULL fields gives v itself (incref'd). */
json_t *api__pick_fields(json_t *v, const char *fields);

/* Parses page, perPage (default 30, capped at 1000), skipTotal, filter and sort (compiled
 * against c as a superuser's) into q. On bad input it answers 400 (403 for forbidden
 * identifiers) itself and returns false. Compiled SQL and parameters live as long as the
 * request. */
bool api__list_query(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     struct store_list_query *q);
/* Replies 200 with PocketBase's list envelope. TAKES items. */
void api__reply_list(struct http_req *req, const struct store_list_query *q,
                     const struct store_list_result *res, json_t *items);

/* The body of a record write: JSON, multipart/form-data or x-www-form-urlencoded (see
 * formbody.c). On malformed input it answers 400 itself and returns NULL.
 * RETURNS BORROWED: lives as long as the request. */
json_t *api__record_body(struct http_req *req, bool allow_empty);

/* Adds the parts of a multipart/form-data body (boundary from ctype) to out. ERR_INVALID for
 * a malformed body (exposed for the fuzz target). */
int api__parse_multipart(const char *ctype, struct str body, json_t *out) MUST_USE;

/* Go strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. */
int api__parse_bool(const char *s, bool *out) MUST_USE;
/* A base-10 integer; ERR_INVALID otherwise. */
int api__parse_int(const char *s, int64_t *out) MUST_USE;

#endif
