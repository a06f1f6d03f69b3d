/*
 * libFuzzer target: the YAML config loader (engine/config) on any bytes,
 * then the cross-field checks, as the daemon runs them at start.
 */
#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct rd_config cfg; /* large: not on the stack */
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&cfg);
    if (rd_config_load_string(&cfg, "fuzz.yaml", (const char *)data, size, err) == 0)
        (void)rd_config_validate(&cfg, err);
    return 0;
}
