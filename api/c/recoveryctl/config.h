/*
 * recoveryctl's client configuration file, ~/.config/recoveryd/client.yaml
 * ($XDG_CONFIG_HOME/recoveryd/client.yaml when set):
 *
 *   endpoints: [http://10.0.0.1:8080, http://10.0.0.2:8080]   # or one comma-separated string
 *   token: s3cret                 # or token_file: /path/to/file (its first line)
 *   cacert: /etc/recoveryd/ca.pem
 *   timeout: 5000                 # ms, one request to one replica
 *
 * Flags win over RECOVERYD_ENDPOINTS / RECOVERYD_TOKEN / RECOVERYD_CACERT,
 * which win over the file.
 */
#ifndef RECOVERYCTL_CONFIG_H
#define RECOVERYCTL_CONFIG_H

#include <stddef.h>

struct ctl_config {
    char *endpoints; /* comma-separated */
    char *token;
    char *cacert;
    long timeout_ms; /* 0: not set */
};

/*
 * Reads `path` (NULL: the default path, where a missing file is no error)
 * into `cfg`. 0, or -1 with `err` naming the file, line and key.
 */
int ctl_config_load(const char *path, struct ctl_config *cfg, char *err, size_t err_len);
void ctl_config_free(struct ctl_config *cfg);

#endif
