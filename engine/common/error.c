#include "recoveryd/error.h"

const char *rd_strerror(int err)
{
    switch (err) {
    case RD_OK:
        return "success";
#define RD__ERR_STR(name, code, msg)                                                               \
    case RD_E##name:                                                                               \
        return msg;
        RD_ERRNO_MAP(RD__ERR_STR)
#undef RD__ERR_STR
    }
    return "unknown error";
}

const char *rd_err_name(int err)
{
    switch (err) {
    case RD_OK:
        return "RD_OK";
#define RD__ERR_NAME(name, code, msg)                                                              \
    case RD_E##name:                                                                               \
        return "RD_E" #name;
        RD_ERRNO_MAP(RD__ERR_NAME)
#undef RD__ERR_NAME
    }
    return "RD_UNKNOWN";
}
