/*
 * The PostgreSQL schema's migrations (sql/migrations/NNN_name.sql), built
 * into the engine (engine/records/embed_migrations.cmake): version 1, 2, ...
 * in order, each applied once, in one transaction with the
 * schema_migrations row that says so (records.c; docs/records.md).
 */
#ifndef RD_RECORDS_MIGRATIONS_H
#define RD_RECORDS_MIGRATIONS_H

struct rd_migration {
    unsigned version;
    const char *name; /* "001_init" */
    const char *sql;
};

extern const struct rd_migration rd_migrations[];
extern const unsigned rd_n_migrations;

#endif
