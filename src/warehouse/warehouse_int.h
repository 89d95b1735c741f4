/* warehouse_int.h - shared by the warehouse facade and its backends only. */
#ifndef TANDEM_WAREHOUSE_WAREHOUSE_INT_H
#define TANDEM_WAREHOUSE_WAREHOUSE_INT_H

#include "warehouse/warehouse.h"

extern const struct wh_ops wh__duckdb_ops;

/* Sets the calling thread's wh_errmsg(NULL) text (open failures). */
void wh__set_open_err(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
