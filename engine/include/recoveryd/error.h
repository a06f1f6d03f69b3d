/*
 * recoveryd error codes.
 *
 * Every function in the engine and the plugin ABI returns 0 on success or one
 * of the negative codes below. The human detail goes into an error buffer on
 * the object that failed; the code is what callers branch on. One X-macro
 * makes the enum, rd_strerror() and rd_err_name() (libuv's UV_ERRNO_MAP).
 */
#ifndef RECOVERYD_ERROR_H
#define RECOVERYD_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define RD_ERRNO_MAP(X)                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(NOTFOUND, -3, "not found")                                                                   \
    X(EXISTS, -4, "already exists")                                                                \
    X(FENCED, -5, "stale fencing token")                                                           \
    X(CONFLICT, -6, "conflicting state")                                                           \
    X(STALE_VERSION, -7, "version is not newer than the stored one")                               \
    X(NOTLEADER, -8, "this replica is not the leader")                                             \
    X(NOQUORUM, -9, "no quorum of replicas is reachable")                                          \
    X(IO, -10, "input/output error")                                                               \
    X(PARSE, -11, "malformed input")                                                               \
    X(TOOLARGE, -12, "too large")                                                                  \
    X(CONFIG, -13, "invalid configuration")                                                        \
    X(SHUTDOWN, -14, "shutting down")                                                              \
    X(BUSY, -15, "busy, try again")                                                                \
    X(CORRUPT, -16, "data is corrupt")                                                             \
    X(UNSUPPORTED, -17, "unsupported version or operation")                                        \
    X(NOSPACE, -18, "no space left on device")                                                     \
    X(TIMEOUT, -19, "timed out")                                                                   \
    X(INTERNAL, -20, "internal error")                                                             \
    X(OUTCOME_UNKNOWN, -21, "proposed, then leadership was lost: the change may still commit")

enum rd_errno {
    RD_OK = 0,
#define RD__ERR_ENUM(name, code, msg) RD_E##name = (code),
    RD_ERRNO_MAP(RD__ERR_ENUM)
#undef RD__ERR_ENUM
};

/* Static human description of `err`; "unknown error" for anything else. */
const char *rd_strerror(int err);

/* Static symbolic name of `err` ("RD_EFENCED"); "RD_UNKNOWN" otherwise. */
const char *rd_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
