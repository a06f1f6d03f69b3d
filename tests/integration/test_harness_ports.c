/*
 * The harness's answer to a port taken between its pick and the daemon's bind
 * (tests/lib/harness.h, rdt_proc_start()): a daemon on ports the start drew
 * is started again on new ones, whether rdt_proc_start() or rdt_wait_ready()
 * sees it exit; a daemon on ports set before (prepared, restarted) never
 * moves. The race is forced: the harness's next pick is a port this test
 * holds with a listener (rdt_force_next_ports()).
 */
#include "harness.h"

#include "cmocka_all.h"
#include "rdt_ctest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT_IN_USE "is already in use by another process"

/* `p` answers /health on its (new) API port, and its lost start is in its log. */
static void assert_moved(struct rdt_proc *p, uint16_t held)
{
    assert_int_equal(p->ports_lost, 1);
    assert_int_not_equal(p->port, held);
    assert_int_not_equal(p->raft_port, held);
    assert_true(rdt_proc_log_has(p, PORT_IN_USE));
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/health", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
}

/* The API port is taken: rdt_proc_start() sees the daemon exit and moves it;
 * cleaning up passes (the lost start's error line is expected). */
static void test_api_port_taken(void **state)
{
    (void)state;
    uint16_t held = 0;
    int fd = rdt_hold_port(&held);
    rdt_force_next_ports(held, 0);
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    assert_moved(&p, held);
    rdt_proc_cleanup(&p);
    close(fd);
}

/* The API port is another daemon's, as in CI (a test running in parallel
 * drew the same port first): that daemon answers /health on it at once, but
 * that is not the start's daemon, which exits; it is started again on new
 * ports, not taken for ready on the other's. */
static void test_port_of_another_daemon(void **state)
{
    (void)state;
    struct rdt_proc other = {0};
    assert_int_equal(rdt_proc_start(&other, NULL), 0);
    assert_int_equal(rdt_wait_ready(&other, rdt_ms(15000)), 0);
    rdt_force_next_ports(other.port, 0);
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    assert_moved(&p, other.port);
    assert_true(rdt_proc_alive(&p));
    rdt_proc_cleanup(&p);
    rdt_proc_cleanup(&other);
}

/* The raft port is taken: the daemon may answer /health before it fails
 * (it listens on the API first), so rdt_wait_ready() may be the one to see
 * it exit: either way it ends up ready on new ports. */
static void test_raft_port_taken(void **state)
{
    (void)state;
    uint16_t held = 0;
    int fd = rdt_hold_port(&held);
    rdt_force_next_ports(0, held);
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    assert_moved(&p, held);
    rdt_proc_cleanup(&p);
    close(fd);
}

/* A daemon that exits after answering /health (a raft port lost just
 * after the API bound its own) is seen by rdt_wait_ready(), which starts it
 * again on new ports and waits again. The exit is staged here: the daemon
 * is killed and its log gets the line a lost port writes. */
static void test_wait_ready_moves(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(rdt_proc_kill9(&p), 0);
    FILE *log = fopen(p.log_path, "a");
    assert_non_null(log);
    fprintf(log,
            "ts=2026-12-04T00:00:00.000Z level=error comp=engine event=raft_failed "
            "error=RD_EIO detail=\"raft address 127.0.0.1:%u " PORT_IN_USE "\"\n",
            (unsigned)p.raft_port);
    assert_int_equal(fclose(log), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    assert_int_equal(p.ports_lost, 1);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    rdt_proc_cleanup(&p);
}

/* A cmocka setup's daemon (rdt_setup_ready()) moves the same way. */
static void test_setup_ready_moves(void **state)
{
    (void)state;
    uint16_t held = 0;
    int fd = rdt_hold_port(&held);
    rdt_force_next_ports(held, 0);
    void *st = NULL;
    assert_int_equal(rdt_setup_ready(&st, NULL, rdt_ms(15000)), 0);
    struct rdt_proc *p = st;
    assert_moved(p, held);
    rdt_proc_cleanup(p);
    free(p);
    close(fd);
}

/* Ports picked by rdt_proc_prepare() are the test's (it may have written
 * them somewhere): a start that loses one fails, on the same ports. */
static void test_prepared_ports_stay(void **state)
{
    (void)state;
    uint16_t held = 0;
    int fd = rdt_hold_port(&held);
    rdt_force_next_ports(held, 0);
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_prepare(&p), 0);
    assert_int_equal(p.port, held);
    assert_int_not_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(p.port, held);
    assert_int_equal(p.ports_lost, 0);
    assert_true(rdt_proc_log_has(&p, PORT_IN_USE));
    p.errors_expected = true; /* the refused bind */
    rdt_proc_cleanup(&p);
    close(fd);
}

/* A restarted daemon keeps its address: when its port was taken meanwhile,
 * the restart fails, and the ports stay. */
static void test_restart_keeps_ports(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    assert_int_equal(rdt_proc_stop(&p, NULL), 0);
    uint16_t port = p.port, raft_port = p.raft_port, held = port;
    int fd = rdt_hold_port(&held);
    assert_int_not_equal(rdt_proc_restart(&p), 0);
    assert_int_equal(p.port, port);
    assert_int_equal(p.raft_port, raft_port);
    assert_int_equal(p.ports_lost, 0);
    p.errors_expected = true; /* the refused bind */
    rdt_proc_cleanup(&p);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_port_taken),      cmocka_unit_test(test_port_of_another_daemon),
        cmocka_unit_test(test_raft_port_taken),     cmocka_unit_test(test_wait_ready_moves),
        cmocka_unit_test(test_setup_ready_moves),   cmocka_unit_test(test_prepared_ports_stay),
        cmocka_unit_test(test_restart_keeps_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
