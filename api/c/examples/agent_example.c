/*
 * The smallest complete agent on librecoveryd-client: registers, submits
 * itself one task (as an operator would), receives it in a heartbeat,
 * checkpoints twice and completes it. Builds against the installed library
 * alone:
 *
 *   cc -o agent_example agent_example.c $(pkg-config --cflags --libs recoveryd-client)
 *   RECOVERYD_ENDPOINTS=http://127.0.0.1:8080 ./agent_example [NODE_ID]
 *
 * Exits 0 once the task is completed, 1 with the reason otherwise.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <recoveryd/client.h>

static int die(rdc_client *c, const char *what, int rc)
{
    fprintf(stderr, "agent_example: %s: %s (%s, %s)\n", what, rdc_errmsg(c), rdc_err_name(rc),
            rdc_errcode(c));
    rdc_client_free(c);
    return 1;
}

int main(int argc, char **argv)
{
    const char *node = argc > 1 ? argv[1] : "example-agent";
    rdc_client *c = NULL;
    char err[256];
    /* NULL options: RECOVERYD_ENDPOINTS, RECOVERYD_TOKEN, RECOVERYD_CACERT. */
    if (rdc_client_new(NULL, &c, err, sizeof err) != 0) {
        fprintf(stderr, "agent_example: %s\n", err);
        return 1;
    }
    json_t *reg = NULL;
    int rc = rdc_agent_register(c, node, 4, NULL, &reg);
    if (rc != 0)
        return die(c, "register", rc);
    json_int_t epoch = json_integer_value(json_object_get(reg, "epoch"));
    json_decref(reg);
    printf("registered %s with epoch %lld\n", node, (long long)epoch);

    json_t *spec = json_pack("{s:{s:s}}", "payload", "job", "example");
    json_t *task = NULL;
    rc = rdc_task_submit(c, spec, &task);
    json_decref(spec);
    if (rc != 0)
        return die(c, "submit", rc);
    char task_id[64];
    snprintf(task_id, sizeof task_id, "%s", json_string_value(json_object_get(task, "task_id")));
    json_decref(task);
    printf("submitted task %s\n", task_id);

    /* Heartbeats until the task is assigned to us: every 100 ms (well inside
     * the engine's heartbeat_interval_ms), 10 s at most. */
    json_int_t attempt = 0;
    for (int i = 0; i < 100 && attempt == 0; i++) {
        json_t *hb = NULL;
        if ((rc = rdc_agent_heartbeat(c, node, epoch, 0, NULL, &hb)) != 0)
            return die(c, "heartbeat", rc);
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(hb, "assignments"), k, a)
        {
            if (strcmp(json_string_value(json_object_get(a, "task_id")), task_id) == 0)
                attempt = json_integer_value(json_object_get(a, "attempt"));
        }
        json_decref(hb);
        struct timespec ts = {0, 100 * 1000000L};
        if (attempt == 0)
            nanosleep(&ts, NULL);
    }
    if (attempt == 0) {
        fprintf(stderr, "agent_example: task %s was never assigned\n", task_id);
        rdc_client_free(c);
        return 1;
    }
    printf("assigned attempt %lld\n", (long long)attempt);

    for (int step = 1; step <= 2; step++) {
        json_t *data = json_pack("{s:i}", "step", step);
        rc = rdc_agent_checkpoint(c, task_id, attempt, step, data, NULL);
        json_decref(data);
        if (rc != 0)
            return die(c, "checkpoint", rc);
        printf("checkpoint version %d\n", step);
    }
    json_t *result = json_pack("{s:b}", "ok", 1);
    json_t *done = NULL;
    rc = rdc_agent_complete(c, task_id, attempt, result, &done);
    json_decref(result);
    if (rc != 0)
        return die(c, "complete", rc);
    printf("task %s %s\n", task_id, json_string_value(json_object_get(done, "state")));
    json_decref(done);
    rdc_client_free(c);
    return 0;
}
