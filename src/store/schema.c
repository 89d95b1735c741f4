/* schema.c - helpers over the collection model. */
#include <string.h>

#include "store/schema.h"

const struct store_field *store_collection_field(const struct store_collection *c, const char *name)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (strcmp(c->fields[i].name, name) == 0)
            return &c->fields[i];
    return NULL;
}
