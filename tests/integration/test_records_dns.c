/*
 * The records export looks the PostgreSQL host's name up off the loop.
 * libpq resolves a host name with a blocking getaddrinfo inside
 * PQconnectStart/PQconnectPoll; made on the loop, a slow DNS server would
 * hold every request for as long as the lookup takes. The daemon runs with
 * tests/preload/slowdns.c preloaded, so "pg.slow.test" takes seconds to
 * resolve (to 127.0.0.1, where nothing listens on port 1): /health must keep
 * answering at once through several lookups, and the export's failure must
 * name the address the lookup found (it was used to connect).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_preload.h"

static void test_slow_dns_never_holds_the_loop(void **state)
{
    (void)state;
    int delay = rdt_ms(2500);
    char ms[16];
    snprintf(ms, sizeof ms, "%d", delay);
    struct rdt_proc p = {0};
    p.errors_expected = false;
    const char *yaml = "fault_tolerance:\n"
                       "  records:\n"
                       "    export: true\n"
                       "    conninfo: \"host=pg.slow.test port=1 dbname=rd user=rd\"\n"
                       "    timeout: 60s\n";
    /* Only the daemon gets the slow resolver (and, in a sanitizer build,
     * leave for the preload to come before the sanitizer's runtime). */
    char *saved_asan = getenv("ASAN_OPTIONS") ? strdup(getenv("ASAN_OPTIONS")) : NULL;
    rdt_preload(RDT_SLOWDNS_SO);
    setenv("RDT_SLOW_DNS_MS", ms, 1);
    int started = rdt_proc_start(&p, yaml);
    unsetenv("LD_PRELOAD");
    unsetenv("RDT_SLOW_DNS_MS");
    if (saved_asan != NULL)
        setenv("ASAN_OPTIONS", saved_asan, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(saved_asan);
    assert_int_equal(started, 0);

    /* Two lookups and a half: each fails to connect, the next one follows
     * after a short backoff. */
    int64_t worst = 0, n = 0;
    for (int64_t until = rdt_now_ms() + delay * 5 / 2; rdt_now_ms() < until; n++) {
        int64_t t0 = rdt_now_ms();
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
        int64_t took = rdt_now_ms() - t0;
        worst = took > worst ? took : worst;
        rdt_sleep_ms(20); /* a request every 20 ms, all along */
    }
    print_message("%lld requests, the slowest %lld ms; each lookup takes %d ms\n", (long long)n,
                  (long long)worst, delay);
    if (worst >= rdt_ms(1000))
        fail_msg("a request waited %lld ms while the host's name was looked up", (long long)worst);
    /* The lookups ended and their address was the one connected to. */
    assert_true(rdt_metric(&p, "recoveryd_records_export_errors_total") >= 2);
    assert_true(rdt_proc_log_has(&p, "event=export_failed"));
    assert_true(rdt_proc_log_has(&p, "127.0.0.1"));
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_dns_never_holds_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
