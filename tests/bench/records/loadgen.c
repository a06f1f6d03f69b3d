/*
 * The records benchmark's load generator (tests/bench/records/run.sh): a
 * failure storm of FAULTS fault records over SECONDS against one recoveryd
 * that exports to PostgreSQL. Each fault is an operator isolating one of
 * AGENTS agents and readmitting it (the fault opened, then resolved: its row
 * written, then updated; two audit records each). Every 100 ms it reads the
 * engine's /metrics: the export lag (rows, age of the oldest unexported
 * change) and the rows exported. After the storm it waits until nothing
 * waits for export (bounded), then compares PostgreSQL with the engine: the
 * fault rows must be exactly the engine's fault records.
 *
 *   bench_records_loadgen --url URL --conninfo C --schema S [--faults 10000]
 *                         [--seconds 60] [--agents 100]
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "rdt_metrics.h"

static CURL *easy;
static char base[256];
static struct rdb_buf body;

static struct curl_slist *hdrs;

/* One request on the kept-alive connection; the HTTP status, or -1. */
static long request(const char *method, const char *path, const char *json)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    return rdb_request(easy, method, url, json, hdrs, 10000L, &body);
}

struct sample {
    int64_t at_ms; /* since the storm began */
    long long lag_rows;
    double lag_s;
    long long exported;
};

static struct sample *samples;
static size_t n_samples, cap_samples;

static bool scrape(int64_t t0_ns)
{
    if (request("GET", "/metrics", NULL) != 200 || body.p == NULL)
        return false;
    const char *m = body.p;
    struct sample s = {
        .at_ms = (rdb_now_ns() - t0_ns) / 1000000,
        .lag_rows = (long long)rdt_metric_in_f(m, "recoveryd_records_export_lag_records"),
        .lag_s = rdt_metric_in_f(m, "recoveryd_records_export_lag_seconds"),
        .exported = 0,
    };
    static const char *const tables[] = {"fault_records", "task_recovery", "audit_log",
                                         "backup_records"};
    for (int k = 0; k < 4; k++) {
        char series[128];
        snprintf(series, sizeof series, "recoveryd_records_exported_total{table=\"%s\"}",
                 tables[k]);
        s.exported += (long long)rdt_metric_in_f(m, series);
    }
    if (n_samples == cap_samples) {
        cap_samples = cap_samples ? cap_samples * 2 : 1024;
        samples = realloc(samples, cap_samples * sizeof(*samples));
        if (samples == NULL)
            return false;
    }
    samples[n_samples++] = s;
    return true;
}

/* The engine's fault records (every page). */
static long long api_faults(void)
{
    long long n = 0;
    char cursor[32] = "";
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/faults/records?limit=1000%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        if (request("GET", path, NULL) != 200)
            return -1;
        json_t *j = json_loads(body.p, 0, NULL);
        n += (long long)json_array_size(json_object_get(j, "items"));
        json_t *next = json_object_get(j, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(j);
        if (!more)
            return n;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_records_loadgen --url URL [--conninfo C] [--schema S] "
               "[--faults N] [--seconds S] [--agents A]\n");
}

int main(int argc, char **argv)
{
    const char *url = NULL, *conninfo = "", *schema = "public";
    unsigned faults = 10000, seconds = 60, agents = 100;
    const struct rdb_opt opts[] = {
        {"url", .str = &url},
        {"conninfo", .str = &conninfo},
        {"schema", .str = &schema},
        {"faults", .num = &faults, .min = 1, .max = 10000000},
        {"seconds", .num = &seconds, .min = 1, .max = 3600},
        {"agents", .num = &agents, .min = 1, .max = 100000},
        {NULL},
    };
    if (rdb_parse_opts(argc, argv, opts, NULL, usage) != 0 || url == NULL) {
        usage(stderr);
        return 2;
    }
    if (rdb_init() != 0)
        return 1;
    snprintf(base, sizeof base, "%s", url);
    easy = curl_easy_init();
    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (easy == NULL || hdrs == NULL)
        return 1;

    for (unsigned a = 0; a < agents; a++) {
        char json[128];
        snprintf(json, sizeof json, "{\"node_id\":\"storm-%u\",\"capacity\":{\"slots\":1}}", a);
        if (request("POST", "/api/v1/nodes", json) != 201) {
            fprintf(stderr, "register storm-%u failed\n", a);
            return 1;
        }
    }
    long long before_faults = api_faults();
    printf("storm: %u faults (isolate + readmit) over %u s on %u agents\n", faults, seconds,
           agents);
    int64_t t0 = rdb_now_ns(), next_scrape = t0;
    int64_t step = (int64_t)seconds * 1000000000LL / faults;
    unsigned failed = 0;
    for (unsigned i = 0; i < faults && !rdb_interrupted; i++) {
        rdb_sleep_until_ns(t0 + (int64_t)i * step);
        char path[128];
        snprintf(path, sizeof path, "/api/v1/nodes/storm-%u/isolate", i % agents);
        failed += request("POST", path, "{\"reason\":\"storm\"}") != 200;
        snprintf(path, sizeof path, "/api/v1/nodes/storm-%u/readmit", i % agents);
        failed += request("POST", path, NULL) != 200;
        if (rdb_now_ns() >= next_scrape) {
            scrape(t0);
            next_scrape += 100000000LL;
        }
    }
    int64_t storm_ms = (rdb_now_ns() - t0) / 1000000;
    size_t storm_samples = n_samples;
    /* The drain: until nothing waits (two minutes at most). */
    int64_t drained_ms = -1;
    while (!rdb_interrupted && (rdb_now_ns() - t0) / 1000000 < storm_ms + 120000) {
        if (scrape(t0) && samples[n_samples - 1].lag_rows == 0) {
            drained_ms = samples[n_samples - 1].at_ms;
            break;
        }
        rdb_sleep_ms(50);
    }
    if (n_samples == 0) {
        fprintf(stderr, "no /metrics sample\n");
        return 1;
    }
    int64_t *rows = calloc(n_samples, sizeof(*rows)), *ages = calloc(n_samples, sizeof(*ages));
    for (size_t i = 0; i < storm_samples; i++) {
        rows[i] = samples[i].lag_rows;
        ages[i] = (int64_t)(samples[i].lag_s * 1000);
    }
    rdb_sort_i64(rows, storm_samples);
    rdb_sort_i64(ages, storm_samples);
    long long exported = samples[n_samples - 1].exported - samples[0].exported;
    printf("storm took %.1f s, %u failed requests\n", storm_ms / 1000.0, failed);
    if (storm_samples > 0)
        printf("during the storm (%zu samples): lag rows p50 %" PRId64 " p99 %" PRId64
               " max %" PRId64 "; lag age p50 %" PRId64 " ms p99 %" PRId64 " ms max %" PRId64
               " ms\n",
               storm_samples, rdb_quantile(rows, storm_samples, 0.5),
               rdb_quantile(rows, storm_samples, 0.99), rows[storm_samples - 1],
               rdb_quantile(ages, storm_samples, 0.5), rdb_quantile(ages, storm_samples, 0.99),
               ages[storm_samples - 1]);
    /* The export's pace: the most rows exported in any 1 s window (while
     * a backlog waits, what PostgreSQL and the engine can do). */
    double peak = 0;
    for (size_t i = 0, j = 0; i < n_samples; i++) {
        while (j < n_samples && samples[j].at_ms - samples[i].at_ms < 1000)
            j++;
        if (j == n_samples)
            break;
        double rate = (samples[j].exported - samples[i].exported) * 1000.0 /
                      (double)(samples[j].at_ms - samples[i].at_ms);
        if (rate > peak)
            peak = rate;
    }
    printf("export pace: at most %.0f rows/s over 1 s\n", peak);
    if (drained_ms >= 0)
        printf("drained %.2f s after the storm ended; %lld rows exported, %.0f rows/s over the "
               "storm and drain\n",
               (drained_ms - storm_ms) / 1000.0, exported,
               exported / ((drained_ms > 0 ? drained_ms : 1) / 1000.0));
    else
        printf("NOT drained within 120 s after the storm\n");
    int rc = drained_ms >= 0 && failed == 0 ? 0 : 1;
    /* PostgreSQL holds exactly the engine's fault records. */
    long long engine_faults = api_faults();
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE status = "
                 "'resolved') FROM %s.fault_records",
                 schema);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            long long pg = atoll(PQgetvalue(r, 0, 0)), distinct = atoll(PQgetvalue(r, 0, 1)),
                      resolved = atoll(PQgetvalue(r, 0, 2));
            printf("fault records: engine %lld (%lld new), PostgreSQL %lld (%lld distinct, %lld "
                   "resolved): %s\n",
                   engine_faults, engine_faults - before_faults, pg, distinct, resolved,
                   pg == engine_faults && distinct == pg && resolved == pg ? "exact" : "MISMATCH");
            if (pg != engine_faults || distinct != pg || resolved != pg)
                rc = 1;
        } else {
            printf("PostgreSQL: %s", PQerrorMessage(c));
            rc = 1;
        }
        PQclear(r);
    } else {
        printf("PostgreSQL: %s", PQerrorMessage(c));
        rc = 1;
    }
    PQfinish(c);
    free(rows);
    free(ages);
    free(samples);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(easy);
    rdb_print_self_cpu();
    rdb_end();
    return rc;
}
