/* core.h - the base layer every module may use: errors, strings, arenas, logging, time,
 * ids, checksums and configuration. It depends on nothing else in tandem. */
#ifndef TANDEM_CORE_CORE_H
#define TANDEM_CORE_CORE_H

#include "core/arena.h"
#include "core/cfg.h"
#include "core/err.h"
#include "core/str.h"
#include "core/util.h"
#include "core/xlog.h"

#define TANDEM_VERSION "0.1.0"

#endif
