/* recoveryd: the fault-tolerance and recovery engine for fleets of AI agents. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backup/backup.h"
#include "common/jarena.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "core/engine.h"
#include "http/auth.h"
#include "http/http.h"
#ifdef RD_FAULT_INJECTION
#include "http/inject_routes.h"
#endif
#include "plugin/host.h"
#include "policy/policy.h"
#include "recoveryd/error.h"
#include "recoveryd/revision.h"
#include "recoveryd/version.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: recoveryd [--config PATH] [--listen HOST:PORT] [--data-dir DIR]\n"
            "                 [--node-id ID] [--replica-id N] [--raft-address HOST:PORT] [--join]\n"
            "                 [--plugins-dir DIR] [--check-config] [--version]\n"
            "                 [--accept-data-loss]\n"
            "\n"
            "  --config PATH       YAML configuration (default: built-in defaults)\n"
            "  --listen HOST:PORT  API address (overrides server.listen)\n"
            "  --data-dir DIR      data directory (overrides storage.data_dir)\n"
            "  --node-id ID        this replica's name (overrides cluster.node_id)\n"
            "  --replica-id N      this replica's raft id (overrides cluster.replica_id)\n"
            "  --raft-address A    this replica's raft HOST:PORT (overrides cluster.raft_address)\n"
            "  --join              start empty and wait to be added to a running cluster\n"
            "  --force-new-cluster make this replica (with --peer/cluster.peers) the only\n"
            "                      voters, whatever the log says: recovers a data directory\n"
            "                      left without voters or quorum (docs/operations.md); run\n"
            "                      it once, then restart without it\n"
            "  --accept-data-loss  start even though the data directory is damaged: the\n"
            "                      damaged files are kept in DATA_DIR/damaged-<time>/, the\n"
            "                      log is cut where it stops being readable and the loss is\n"
            "                      logged (docs/operations.md, \"Damaged data directory\")\n"
            "  --peer ID=HOST:PORT[=URL]  an initial voter: raft id, raft address, API URL\n"
            "                      (repeat for each; replaces cluster.peers)\n"
            "  --plugins-dir DIR   where plugins are loaded from (overrides plugins.dir)\n"
            "  --policies-dir DIR  where the Lua policies are (overrides policies.dir)\n"
            "  --ui-dir DIR        the dashboard's files (overrides server.ui_dir; \"\" = off)\n"
            "  --check-config      validate the configuration and exit 0 or 1\n"
            "  --version           print the version and exit\n"
            "\n"
            "       recoveryd restore --from URL ... (recoveryd restore --help)\n"
            "       recoveryd token new --id ID --role ROLE ... (recoveryd token --help)\n");
}

static void token_usage(FILE *out)
{
    fprintf(out, "usage: recoveryd token new --id ID --role agent|reader|operator|admin\n"
                 "                           [--nodes LIST] [--expires RFC3339]\n"
                 "\n"
                 "Makes a new API token: prints the secret once (give it to the client, as\n"
                 "'Authorization: Bearer SECRET') and the line to add to security.tokens_file,\n"
                 "which holds only its SHA-256. An agent token needs --nodes: the node ids it\n"
                 "may act as, comma-separated, each exact or a prefix ending in '*'.\n"
                 "Reload with SIGHUP or POST /api/v1/policies/reload (docs/security.md).\n");
}

/* `recoveryd token new ...`: 0, 1 (failed), 2 (usage). */
static int token_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},    {"role", required_argument, NULL, 'r'},
        {"nodes", required_argument, NULL, 'n'}, {"expires", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *id = NULL, *role = NULL, *nodes = NULL, *expires = NULL;
    if (argc < 2 || strcmp(argv[1], "new") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        token_usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    int c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'n':
            nodes = optarg;
            break;
        case 'x':
            expires = optarg;
            break;
        case 'h':
            token_usage(stdout);
            return 0;
        default:
            token_usage(stderr);
            return 2;
        }
    }
    if (id == NULL || role == NULL || optind != argc - 1) {
        token_usage(stderr);
        return 2;
    }
    char secret[RD_TOKEN_SECRET_LEN + 1], line[2048], err[512] = "";
    if (rd_token_secret_new(secret) != 0) {
        fprintf(stderr, "recoveryd token: no random bytes from OpenSSL\n");
        return 1;
    }
    /* The line goes through the file's own parser: what is printed loads. */
    struct rd_tokens *check = NULL;
    if (rd_token_line(id, role, secret, expires, nodes, line, sizeof(line)) != 0 ||
        rd_tokens_parse("token", line, strlen(line), &check, err, sizeof(err)) != 0) {
        fprintf(stderr, "recoveryd token: %s\n", err[0] ? err + 9 : "the values are too long");
        return 1;
    }
    rd_tokens_free(check);
    printf("secret: %s\nline:   %s\n", secret, line);
    return 0;
}

static void restore_usage(FILE *out)
{
    fprintf(
        out,
        "usage: recoveryd restore --from URL --data-dir DIR [--backup ID]\n"
        "                         [--to-index N | --to-time RFC3339] [--replica-id N]\n"
        "                         [--peer ID=HOST:PORT[=URL] ...] [--raft-address HOST:PORT]\n"
        "                         [--plugins-dir DIR] [--no-archive]\n"
        "\n"
        "Builds a data directory for a new cluster from a backup (and the archive after\n"
        "it): run it with the same --from and --peer list for every replica, then start\n"
        "each with its --data-dir and the same peers (docs/backup.md).\n"
        "\n"
        "  --from URL          where the backups are: file:///PATH,\n"
        "                      s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=R,\n"
        "                      postgres://USER@HOST/DB?table=T (or postgresql://)\n"
        "  --data-dir DIR      the new data directory (must not exist, or be empty)\n"
        "  --backup ID         this backup (default: the newest complete one)\n"
        "  --to-index N        replay the archive up to raft index N (point in time)\n"
        "  --to-time T         replay the archive up to time T (RFC 3339)\n"
        "                      (default: the newest backup and all the archive after it)\n"
        "  --no-archive        the backup alone, without the archive after it\n"
        "  --replica-id N      this replica's raft id (default 1)\n"
        "  --peer ID=HOST:PORT[=URL]  a voter of the new cluster, this one included\n"
        "                      (repeat; none: this replica alone)\n"
        "  --raft-address A    this replica's raft HOST:PORT without --peer\n"
        "                      (default 127.0.0.1:7080)\n"
        "  --plugins-dir DIR   where file.so, s3.so, postgres.so are (default build/plugins)\n");
}

/* Parses ID=HOST:PORT[=URL] into `pe`. 0 or -1. */
static int parse_peer(const char *arg, struct rd_cfg_peer *pe)
{
    memset(pe, 0, sizeof(*pe));
    char buf[2 * RD_CFG_STR], host[RD_CFG_STR];
    uint16_t port;
    snprintf(buf, sizeof(buf), "%s", arg);
    char *addr = strchr(buf, '='), *url = addr ? strchr(addr + 1, '=') : NULL;
    if (addr != NULL)
        *addr++ = '\0';
    if (url != NULL)
        *url++ = '\0';
    char *end = NULL;
    unsigned long long id = strtoull(buf, &end, 10);
    if (id == 0 || end == buf || *end != '\0' || addr == NULL ||
        strlen(addr) >= sizeof(pe->address) || rd_config_parse_hostport(addr, host, &port) != 0 ||
        (url != NULL && (strlen(url) >= sizeof(pe->api_url) ||
                         (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))))
        return -1;
    pe->id = id;
    snprintf(pe->address, sizeof(pe->address), "%s", addr);
    if (url != NULL)
        snprintf(pe->api_url, sizeof(pe->api_url), "%s", url);
    return 0;
}

/* `recoveryd restore ...`: 0, 1 (it failed: one line says why), 2 (usage). */
static int restore_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"backup", required_argument, NULL, 'b'},
        {"to-index", required_argument, NULL, 'i'},
        {"to-time", required_argument, NULL, 't'},
        {"data-dir", required_argument, NULL, 'd'},
        {"replica-id", required_argument, NULL, 'r'},
        {"peer", required_argument, NULL, 'e'},
        {"raft-address", required_argument, NULL, 'a'},
        {"plugins-dir", required_argument, NULL, 'p'},
        {"no-archive", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct rd_restore_opts o;
    memset(&o, 0, sizeof(o));
    o.replica_id = 1;
    o.raft_address = "127.0.0.1:7080";
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "f:b:i:t:d:r:e:a:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.from = optarg;
            break;
        case 'b':
            if (!rd_uuid_valid(optarg)) {
                fprintf(stderr,
                        "recoveryd restore: --backup: expected a backup id (a UUID), got "
                        "'%s'\n",
                        optarg);
                return 2;
            }
            o.backup_id = optarg;
            break;
        case 'i':
            o.to_index = strtoull(optarg, &end, 10);
            if (o.to_index == 0 || end == optarg || *end != '\0') {
                fprintf(stderr,
                        "recoveryd restore: --to-index: expected a raft index above 0, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 't':
            if (rd_time_parse(optarg, &o.to_time_ms) != 0) {
                fprintf(stderr,
                        "recoveryd restore: --to-time: expected an RFC 3339 time like "
                        "2026-11-24T03:04:05Z, got '%s'\n",
                        optarg);
                return 2;
            }
            o.has_to_time = true;
            break;
        case 'd':
            o.data_dir = optarg;
            break;
        case 'r':
            o.replica_id = strtoull(optarg, &end, 10);
            if (o.replica_id == 0 || end == optarg || *end != '\0') {
                fprintf(stderr,
                        "recoveryd restore: --replica-id: expected a raft server id above 0, got "
                        "'%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'e':
            if (o.n_peers == RD_CFG_MAX_PEERS) {
                fprintf(stderr, "recoveryd restore: --peer: at most %d peers\n", RD_CFG_MAX_PEERS);
                return 2;
            }
            if (parse_peer(optarg, &o.peers[o.n_peers]) != 0) {
                fprintf(stderr,
                        "recoveryd restore: --peer: expected ID=HOST:PORT[=http://HOST:PORT], got "
                        "'%s'\n",
                        optarg);
                return 2;
            }
            for (unsigned i = 0; i < o.n_peers; i++)
                if (o.peers[i].id == o.peers[o.n_peers].id) {
                    fprintf(stderr, "recoveryd restore: --peer: id %llu is given twice\n",
                            (unsigned long long)o.peers[i].id);
                    return 2;
                }
            o.n_peers++;
            break;
        case 'a': {
            char host[RD_CFG_STR];
            uint16_t port;
            if (rd_config_parse_hostport(optarg, host, &port) != 0) {
                fprintf(stderr, "recoveryd restore: --raft-address: expected HOST:PORT, got '%s'\n",
                        optarg);
                return 2;
            }
            o.raft_address = optarg;
            break;
        }
        case 'p':
            o.plugins_dir = optarg;
            break;
        case 'N':
            o.no_archive = true;
            break;
        case 'h':
            restore_usage(stdout);
            return 0;
        default:
            restore_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "recoveryd restore: unexpected argument '%s'\n", argv[optind]);
        restore_usage(stderr);
        return 2;
    }
    if (o.from == NULL || o.data_dir == NULL) {
        fprintf(stderr, "recoveryd restore: %s is required\n",
                o.from == NULL ? "--from URL" : "--data-dir DIR");
        restore_usage(stderr);
        return 2;
    }
    if (o.to_index != 0 && o.has_to_time) {
        fprintf(stderr, "recoveryd restore: give --to-index or --to-time, not both\n");
        return 2;
    }
    bool self = o.n_peers == 0;
    for (unsigned i = 0; i < o.n_peers; i++)
        self |= o.peers[i].id == o.replica_id;
    if (!self) {
        fprintf(stderr,
                "recoveryd restore: --peer: no peer has this replica's id %llu (--replica-id): "
                "list every voter of the new cluster, this one included\n",
                (unsigned long long)o.replica_id);
        return 2;
    }
    /* The plugins' and the host's info lines are the daemon's business;
     * the command prints its own progress. */
    rd_log_set_level(RD_LOG_WARN);
    char err[1024];
    if (rd_restore(&o, stdout, err, sizeof(err)) != 0) {
        fprintf(stderr, "recoveryd restore: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"node-id", required_argument, NULL, 'n'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"plugins-dir", required_argument, NULL, 'p'},
        {"policies-dir", required_argument, NULL, 'P'},
        {"ui-dir", required_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},
        {"replica-id", required_argument, NULL, 'r'},
        {"raft-address", required_argument, NULL, 'a'},
        {"join", no_argument, NULL, 'j'},
        {"peer", required_argument, NULL, 'e'},
        {"force-new-cluster", no_argument, NULL, 'F'},
        {"accept-data-loss", no_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    rd_jarena_install(); /* the loop runs on this thread */
    const char *config_path = NULL, *listen = NULL, *data_dir = NULL, *node_id = NULL,
               *plugins_dir = NULL, *policies_dir = NULL, *ui_dir = NULL, *replica_id = NULL,
               *raft_address = NULL;
    int check = 0, join = 0, force = 0, accept_loss = 0, c;
    const char *peers[RD_CFG_MAX_PEERS + 1];
    unsigned n_peers = 0;
    if (argc > 1 && strcmp(argv[1], "restore") == 0)
        return restore_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_main(argc - 1, argv + 1);
    while ((c = getopt_long(argc, argv, "c:l:d:n:p:P:U:kVhr:a:je:", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            if (n_peers == RD_CFG_MAX_PEERS) {
                fprintf(stderr, "recoveryd: --peer: at most %d peers\n", RD_CFG_MAX_PEERS);
                return 1;
            }
            peers[n_peers++] = optarg;
            break;
        case 'r':
            replica_id = optarg;
            break;
        case 'a':
            raft_address = optarg;
            break;
        case 'j':
            join = 1;
            break;
        case 'F':
            force = 1;
            break;
        case 'L':
            accept_loss = 1;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'n':
            node_id = optarg;
            break;
        case 'p':
            plugins_dir = optarg;
            break;
        case 'P':
            policies_dir = optarg;
            break;
        case 'U':
            ui_dir = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("recoveryd %s (revision %s, libuv %s, raft %d)\n", RD_VERSION_STRING,
                   RD_GIT_REVISION, uv_version_string(), RAFT_VERSION_NUMBER);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "recoveryd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    static struct rd_config cfg;
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&cfg);
    if (config_path != NULL && rd_config_load_file(&cfg, config_path, err) != 0) {
        fprintf(stderr, "recoveryd: %s\n", err);
        return 1;
    }
    if (listen != NULL &&
        rd_config_parse_hostport(listen, cfg.server.listen_host, &cfg.server.listen_port) != 0) {
        fprintf(stderr, "recoveryd: --listen: expected HOST:PORT, got '%s'\n", listen);
        return 1;
    }
    /* What the flags set, error messages name as set by them. */
    if (listen != NULL)
        cfg.origin[RD_CFG_SERVER_LISTEN] = RD_CFG_FROM_FLAG;
    if (data_dir != NULL) {
        if (strlen(data_dir) >= sizeof(cfg.storage.data_dir)) {
            fprintf(stderr, "recoveryd: --data-dir: path too long\n");
            return 1;
        }
        snprintf(cfg.storage.data_dir, sizeof(cfg.storage.data_dir), "%s", data_dir);
        cfg.origin[RD_CFG_DATA_DIR] = RD_CFG_FROM_FLAG;
    }
    if (plugins_dir != NULL) {
        if (strlen(plugins_dir) >= sizeof(cfg.plugins.dir)) {
            fprintf(stderr, "recoveryd: --plugins-dir: path too long\n");
            return 1;
        }
        snprintf(cfg.plugins.dir, sizeof(cfg.plugins.dir), "%s", plugins_dir);
        cfg.origin[RD_CFG_PLUGINS_DIR] = RD_CFG_FROM_FLAG;
    }
    if (policies_dir != NULL) {
        if (strlen(policies_dir) >= sizeof(cfg.policies.dir)) {
            fprintf(stderr, "recoveryd: --policies-dir: path too long\n");
            return 1;
        }
        snprintf(cfg.policies.dir, sizeof(cfg.policies.dir), "%s", policies_dir);
        cfg.origin[RD_CFG_POLICIES_DIR] = RD_CFG_FROM_FLAG;
    }
    if (ui_dir != NULL) {
        if (strlen(ui_dir) >= sizeof(cfg.server.ui_dir)) {
            fprintf(stderr, "recoveryd: --ui-dir: path too long\n");
            return 1;
        }
        snprintf(cfg.server.ui_dir, sizeof(cfg.server.ui_dir), "%s", ui_dir);
        cfg.origin[RD_CFG_UI_DIR] = RD_CFG_FROM_FLAG;
    }
    if (node_id != NULL) {
        if (!rd_node_id_valid(node_id, strlen(node_id))) {
            fprintf(stderr,
                    "recoveryd: --node-id: expected 1-255 characters of "
                    "[A-Za-z0-9._:-], got '%s'\n",
                    node_id);
            return 1;
        }
        snprintf(cfg.cluster.node_id, sizeof(cfg.cluster.node_id), "%s", node_id);
    }
    if (replica_id != NULL) {
        char *end = NULL;
        unsigned long long id = strtoull(replica_id, &end, 10);
        if (id == 0 || end == replica_id || *end != '\0') {
            fprintf(stderr,
                    "recoveryd: --replica-id: expected a raft server id above 0, got '%s'\n",
                    replica_id);
            return 1;
        }
        cfg.cluster.replica_id = id;
    }
    if (raft_address != NULL) {
        char host[RD_CFG_STR];
        uint16_t port;
        if (strlen(raft_address) >= sizeof(cfg.cluster.raft_address) ||
            rd_config_parse_hostport(raft_address, host, &port) != 0) {
            fprintf(stderr, "recoveryd: --raft-address: expected HOST:PORT, got '%s'\n",
                    raft_address);
            return 1;
        }
        snprintf(cfg.cluster.raft_address, sizeof(cfg.cluster.raft_address), "%s", raft_address);
        cfg.origin[RD_CFG_RAFT_ADDRESS] = RD_CFG_FROM_FLAG;
    }
    if (join)
        cfg.cluster.join = true;
    if (force)
        cfg.cluster.force_new_cluster = true;
    if (accept_loss)
        cfg.storage.accept_data_loss = true;
    if (n_peers > 0) {
        /* --peer ID=HOST:PORT[=URL], the flags replace the file's list. */
        for (unsigned i = 0; i < n_peers; i++) {
            struct rd_cfg_peer *pe = &cfg.cluster.peers[i];
            memset(pe, 0, sizeof(*pe));
            char buf[2 * RD_CFG_STR], host[RD_CFG_STR];
            uint16_t port;
            snprintf(buf, sizeof(buf), "%s", peers[i]);
            char *addr = strchr(buf, '='), *url = addr ? strchr(addr + 1, '=') : NULL;
            if (addr != NULL)
                *addr++ = '\0';
            if (url != NULL)
                *url++ = '\0';
            char *end = NULL;
            unsigned long long id = strtoull(buf, &end, 10);
            if (id == 0 || end == buf || *end != '\0' || addr == NULL ||
                strlen(addr) >= sizeof(pe->address) ||
                rd_config_parse_hostport(addr, host, &port) != 0 ||
                (url != NULL &&
                 (strlen(url) >= sizeof(pe->api_url) ||
                  (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)))) {
                fprintf(stderr,
                        "recoveryd: --peer: expected ID=HOST:PORT[=http://HOST:PORT], got '%s'\n",
                        peers[i]);
                return 1;
            }
            pe->id = id;
            snprintf(pe->address, sizeof(pe->address), "%s", addr);
            if (url != NULL)
                snprintf(pe->api_url, sizeof(pe->api_url), "%s", url);
        }
        cfg.cluster.n_peers = n_peers;
    }
    if (rd_config_validate(&cfg, err) != 0) {
        fprintf(stderr, "recoveryd: %s%s%s\n", config_path ? config_path : "",
                config_path ? ": " : "", err);
        return 1;
    }
    if (check) {
        char perr[1024];
        if (rd_plugin_check_config(&cfg, perr, sizeof(perr)) != 0) {
            fprintf(stderr, "recoveryd: %s\n", perr);
            return 1;
        }
        struct rd_policy_host *pol = NULL;
        if (rd_policy_load(cfg.policies.dir, cfg.policies.budget_ms, cfg.policies.memory_limit,
                           &pol, perr, sizeof(perr)) != 0) {
            char origin[RD_CFG_ERRLEN];
            fprintf(stderr, "recoveryd: policies.dir: %s (%s)\n", perr,
                    rd_config_origin(&cfg, RD_CFG_POLICIES_DIR, origin, sizeof(origin)));
            return 1;
        }
        rd_policy_free(pol);
        bool ui_on;
        if (rd_http_ui_check(&cfg, &ui_on, perr, sizeof(perr)) != 0) {
            fprintf(stderr, "recoveryd: %s\n", perr);
            return 1;
        }
        if (cfg.security.tokens_file[0] != '\0') {
            struct rd_tokens *tk = NULL;
            if (rd_tokens_load(cfg.security.tokens_file, &tk, perr, sizeof(perr)) != 0) {
                fprintf(stderr, "recoveryd: security.tokens_file: %s\n", perr);
                return 1;
            }
            rd_tokens_free(tk);
        }
        if (cfg.security.peer_token_file[0] != '\0' &&
            rd_peer_token_read(cfg.security.peer_token_file, cfg.security.peer_authorization,
                               sizeof(cfg.security.peer_authorization), perr, sizeof(perr)) != 0) {
            fprintf(stderr, "recoveryd: security.peer_token_file: %s\n", perr);
            return 1;
        }
        printf("recoveryd: configuration %s is valid\n", config_path ? config_path : "(defaults)");
        return 0;
    }
    /* Every request allocates and frees small JSON values: keep glibc from
     * giving the heap back and asking for it again (brk) on each burst.
     * Large buffers (checkpoints of up to 512 KiB, their raft entries, request
     * bodies) are mapped on their own instead, and given back when freed: in
     * the heap, the log entries a snapshot freed stayed resident as free
     * chunks (74-91 MB of a 135-152 MB heap after 200 such checkpoints). */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
    static struct rd_engine eng;
#ifdef RD_FAULT_INJECTION
    eng.debug = rd_inject_debug_route; /* recoveryd-fi only: tests corrupt state on purpose */
#endif
    return rd_engine_run(&eng, uv_default_loop(), &cfg);
}
