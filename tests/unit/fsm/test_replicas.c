/* Replica API URLs in the log (engine/fsm/replicas.c). */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

/* Replica API URLs live in the log (for redirects and health), sorted by
 * id, replaced and forgotten by later commands, and kept in snapshots. */
static void test_replica_info(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    rd_fsm_init(&g);
    apply(&f, cmd_replica_info(3, "http://127.0.0.1:8083", 1));
    apply(&f, cmd_replica_info(1, "http://127.0.0.1:8081", 1));
    apply(&f, cmd_replica_info(2, "http://127.0.0.1:8082", 1));
    apply(&f, cmd_replica_info(2, "http://10.0.0.2:8080", 1));
    assert_int_equal(f.n_replicas, 3);
    assert_int_equal(f.replicas[0].id, 1);
    assert_string_equal(rd_fsm_replica_url(&f, 2), "http://10.0.0.2:8080");
    apply(&f, cmd_replica_info(1, "", 1));
    assert_null(rd_fsm_replica_url(&f, 1));
    assert_int_equal(f.n_replicas, 2);
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    assert_int_equal(rd_fsm_restore(&g, snap.p, snap.len), 0);
    assert_string_equal(rd_fsm_replica_url(&g, 3), "http://127.0.0.1:8083");
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest(&g));
    /* A full table refuses a new replica, not an update. */
    for (uint64_t id = 10; f.n_replicas < RD_FSM_MAX_REPLICAS; id++)
        apply(&f, cmd_replica_info(id, "http://h:1", 1));
    assert_int_equal(apply(&f, cmd_replica_info(999, "http://h:1", 1))->status, RD_ECONFLICT);
    assert_int_equal(apply(&f, cmd_replica_info(3, "http://h:2", 1))->status, 0);
    /* A URL with a NUL inside would be stored empty and make every later
     * snapshot unreadable: refused. */
    struct rd_cmd bad = {.type = RD_CMD_REPLICA_INFO, .time_ms = 1};
    bad.u.rinfo.id = 3;
    bad.u.rinfo.api_url = (struct rd_str){"\0ttp://h:3", 10};
    assert_int_equal(apply(&f, fsm_encode(&bad))->status, RD_EINVAL);
    assert_string_equal(rd_fsm_replica_url(&f, 3), "http://h:2");
    rd_w_free(&snap);
    rd_fsm_close(&f);
    rd_fsm_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
