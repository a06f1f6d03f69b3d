/*
 * The preloads of tests/preload/, for the daemons a test starts: LD_PRELOAD
 * in the environment they inherit, and the switches of the failing disk
 * (failio.c: files in the daemon's directory).
 */
#ifndef RDT_PRELOAD_H
#define RDT_PRELOAD_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cmocka_all.h"
#include "harness.h"

/* `value` appended to the variable `name` (':' between). */
static inline void rdt_setenv_appended(const char *name, const char *value)
{
    const char *old = getenv(name);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s%s", old ? old : "", old && old[0] ? ":" : "", value);
    setenv(name, buf, 1);
}

/* Every daemon started from here on preloads `so` (and, in a sanitizer
 * build, lets it come before the sanitizer's runtime). */
static inline void rdt_preload(const char *so)
{
    setenv("LD_PRELOAD", so, 1);
    rdt_setenv_appended("ASAN_OPTIONS", "verify_asan_link_order=0");
}

/* One of failio.c's switches of `p`: the file DIR/`name` made (`on`) or
 * removed. */
static inline void rdt_failio_switch(const struct rdt_proc *p, const char *name, bool on)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/%s", p->dir, name);
    if (on) {
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        assert_true(fd >= 0);
        close(fd);
    } else {
        assert_int_equal(unlink(path), 0);
    }
}

/* failio.c's hung disk: log writes of `p` that never finish while
 * DIR/hang-io exists (`on`), written again once it is gone. */
static inline void rdt_disk_hangs(const struct rdt_proc *p, bool on)
{
    rdt_failio_switch(p, "hang-io", on);
}

#endif
