/*
 * systemd's service notifications (sd_notify(3), libsystemd): READY=1 once
 * the API listens and raft runs, STOPPING=1 when the shutdown starts,
 * STATUS= lines for `systemctl status`, and WATCHDOG=1 from a loop timer
 * when the unit sets WatchdogSec= (a loop stuck longer than that gets the
 * process restarted). Every call is a no-op without $NOTIFY_SOCKET (not
 * started by systemd with Type=notify: make run, the tests, a container).
 * Loop thread only.
 */
#ifndef RD_NOTIFY_H
#define RD_NOTIFY_H

#include <stdbool.h>
#include <uv.h>

struct rd_notify {
    uv_timer_t watchdog;
    bool watchdog_on; /* the timer is initialized (and runs until rd_notify_close) */
    bool ready;       /* READY=1 was sent */
    bool closed;
};

/* READY=1 with `status` (once; later calls only send STATUS=), and the
 * watchdog timer when $WATCHDOG_USEC asks for one. */
void rd_notify_ready(struct rd_notify *n, uv_loop_t *loop, const char *status);

/* STATUS=`status` (the role: "leader", "follower"). */
void rd_notify_status(struct rd_notify *n, const char *status);

/* STOPPING=1: the shutdown started. */
void rd_notify_stopping(struct rd_notify *n);

/* Stops and closes the watchdog timer (before the loop's last run). */
void rd_notify_close(struct rd_notify *n);

#endif
