/*
 * Who made a request: filled by the API's authentication before a handler
 * runs, read by handlers and the audit trail. Never holds a token.
 */
#ifndef RD_PRINCIPAL_H
#define RD_PRINCIPAL_H

enum rd_role {
    RD_ROLE_NONE = 0, /* unauthenticated (authentication off, or an open route) */
    RD_ROLE_AGENT,
    RD_ROLE_READER,
    RD_ROLE_OPERATOR,
    RD_ROLE_ADMIN,
};

struct rd_principal {
    char id[96]; /* token id, certificate subject, "anonymous" or "recoveryd" */
    enum rd_role role;
    char source[64];     /* the client's address "ip:port" ("" for the engine itself) */
    char request_id[48]; /* X-Request-Id: the client's, or generated; echoed in the answer */
};

#endif
