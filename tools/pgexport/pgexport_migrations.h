/*
 * pgexport_migrations.h - the schema usher-pgexport applies, embedded at
 * build time from tools/pgexport/migrations/NNN_name.sql (embed.c).
 */
#ifndef USHER_PGEXPORT_MIGRATIONS_H
#define USHER_PGEXPORT_MIGRATIONS_H

typedef struct pgexport_migration {
    int version;
    const char *name;
    const char *sql;
} pgexport_migration;

extern const pgexport_migration pgexport_migrations[];
extern const int pgexport_migration_count;

#endif
